"""The bank-structured accelerator simulator: hwconfig (config.py), SRAM costs (sram.py), DRAM models
(dram/), and the trace-driven engine that uses them. Torch-free: installs and runs without the model stack."""
