"""placeholder replaced below"""


def run_cuda_cli(**kwargs):
    from codesign.errors import CodesignError

    raise CodesignError("validate --device cuda: not yet wired")
