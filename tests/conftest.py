"""Session-wide test settings, loaded before any test module imports codesign.

Triton decides between compiled and interpreted kernels when a @triton.jit function is *defined*, so the
interpreter is switched on here, before the first import of codesign.kernels (codesign.sparse imports it for
weight packing). The CPU suite has no GPU: every Triton launch in it is interpreted. Code under test that runs
on CPU tensors only calls the kernels when asked to explicitly (backend="triton"), so the other tests keep
their torch paths.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"
