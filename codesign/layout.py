"""The bundled, channel-major FFN weight layout shared by the kernels and the simulator.

One *channel bundle* holds everything the FFN needs for intermediate channel c of a layer, stored together:

    bundle[c] = [ gate_proj.weight[c, :] | up_proj.weight[c, :] | down_proj.weight[:, c] ]   # (3, hidden)

so a layer's packed weights are a (intermediate, 3, hidden) array, channels in order, which puts every bank of
B consecutive channels in one contiguous run of B bundles (row-column bundling, "LLM in a Flash"). Layers are
stored one after another. Because kernels read exactly these bytes and the simulator fetches exactly these
addresses, "bytes a kernel loads" and "bytes the simulator predicts" are the same quantity.

This module is torch-free on purpose: the simulator imports it without the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

BUNDLE_ROWS = 3  # gate column, up column, down row
GATE, UP, DOWN = 0, 1, 2


@dataclass(frozen=True)
class BundleLayout:
    """Byte addresses of channel bundles for a model with `layers` SwiGLU FFNs of shape hidden × intermediate."""

    hidden: int
    intermediate: int
    layers: int
    dtype_bytes: int = 2
    base_address_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "intermediate", "layers", "dtype_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BundleLayout.{name} must be positive, got {getattr(self, name)}")

    @property
    def bundle_bytes(self) -> int:
        """Bytes of one channel bundle: gate column + up column + down row."""
        return BUNDLE_ROWS * self.hidden * self.dtype_bytes

    @property
    def layer_bytes(self) -> int:
        return self.intermediate * self.bundle_bytes

    @property
    def total_bytes(self) -> int:
        return self.layers * self.layer_bytes

    def channel_address_bytes(self, layer: int, channel: int) -> int:
        """Start address of channel `channel`'s bundle in layer `layer`."""
        return self.base_address_bytes + layer * self.layer_bytes + channel * self.bundle_bytes

    def bank_address_bytes(self, layer: int, bank: int, bank_size: int) -> int:
        """Start address of bank `bank` (channels [bank·B, (bank+1)·B)) in layer `layer`."""
        return self.channel_address_bytes(layer, bank * bank_size)
