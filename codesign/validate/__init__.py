"""`codesign validate`: the simulator's traffic held against what the Triton FFN kernels really load.

    cases.py   which launches are validated (tokens, B, k, layer shape, trace) and the masks they read
    memsys.py  the simulator configured as the kernels' memory system, and what it predicts (torch-free)
    cpu.py     --device cpu: the kernels under TRITON_INTERPRET=1 with the traffic probe, compared
    cuda.py    --device cuda: ncu DRAM bytes and CUDA-event time on a GPU, compared with hwconfigs/h200.yaml

docs/VALIDATION.md lists every check the simulator passes, with its error figure.
"""
