"""The command line as a whole: --help everywhere, --version, and user mistakes as one line + exit 2."""

import subprocess
import sys

import click
import pytest

from codesign.cli import cli


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, path)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True, cwd=cwd)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and "codesign, version" in out.stdout


@pytest.mark.parametrize("path", list(all_commands(cli)), ids=" ".join)
def test_every_command_has_help(path):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_unknown_command_is_one_line():
    out = run("frobnicate")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1


def test_every_number_option_is_bounded():
    """Integers fit int64 and floats are finite on every command, including ones added later."""
    from codesign.cli.params import INT64_MAX

    for path in all_commands(cli):
        cmd = cli
        for name in path:
            cmd = cmd.commands[name]
        for param in cmd.params:
            t = param.type
            assert type(t) not in (click.types.IntParamType, click.types.FloatParamType), (path, param.name)
            if isinstance(t, click.IntRange):
                assert t.max is not None and t.max <= INT64_MAX, (path, param.name)
