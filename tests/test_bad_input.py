"""Every bad input to the CLI is one clear line (issue 15): exit 2, the field or flag and the bad value
named, no traceback, and nothing deployed, started or written.

Each case is an argv run through `harness.cli.main` in a fresh ``tmp_path`` (the current directory,
so a default output such as ``k8s/`` or ``reports/`` would land there too), after the files below
are written into it. ``{tmp}`` in a case stands for that directory. Starting a process or serving is
a tripwire that fails the case; so is any new file or directory under ``tmp_path``, or a new cgroup
of this process. A few cases run again as a subprocess, as a user's terminal shows them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.platforms.local.cgroups import owned_cgroup_dirs

ROOT = Path(__file__).resolve().parents[1]


def _alias_bomb() -> str:
    # ten lines, nine aliases a line: 9**9 (387 million) values once expanded
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    names = "abcdefghi"
    for previous, name in zip(names, names[1:]):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines + ["name: *i"]) + "\n"


FILES: dict[str, bytes | str] = {
    "latin1.yaml": b"topology: single\nname: caf\xe9\n",  # Latin-1, not UTF-8: byte 26 is 0xe9
    "latin1.json": b'{"title": "caf\xe9"}',
    "syntax.yaml": "topology: single\nprobes: [a, b\nname: x\n",
    "bomb.yaml": _alias_bomb(),
    "recursive.yaml": "name: &a [1, *a]\n",
    "control.yaml": "name: a\x00b\n",
    "two.yaml": "name: a\n---\nname: b\n",
    "empty.yaml": "",
    "comments.yaml": "# the defaults will do\n\n   # really\n",
    "list.yaml": "- topology\n- single\n",
    "unknown.yaml": "replicaz: 2\n",
    "wrongtype.yaml": "replicas: many\n",
    "negative.yaml": "terminationGracePeriodSeconds: -5\n",
    "sla-bad.yaml": "sla:\n  period_days: -7\n",
    "bad.json": '{"title": "t",\n "description": }\n',
    "empty.json": "  \n",
    "list.json": "[1, 2]\n",
    "experiment.txt": "{}\n",
    "afile": "a plain file\n",
}
DIRS = ("adir",)

# (id, argv, what the one line must contain); {tmp} is the test's directory
CASES = [
    # render
    ("render-spec-not-utf8", "render --spec {tmp}/latin1.yaml", ["spec='{tmp}/latin1.yaml'", "not UTF-8", "offset 26"]),
    ("render-spec-yaml-syntax", "render --spec {tmp}/syntax.yaml", ["spec='{tmp}/syntax.yaml'", "line 3, column 5"]),
    ("render-spec-alias-bomb", "render --spec {tmp}/bomb.yaml", ["spec='{tmp}/bomb.yaml'", "alias bomb"]),
    ("render-spec-recursive-alias", "render --spec {tmp}/recursive.yaml", ["spec='{tmp}/recursive.yaml'", "recursive"]),
    ("render-spec-control-character", "render --spec {tmp}/control.yaml", ["spec='{tmp}/control.yaml'", "line 1, column 8"]),
    ("render-spec-two-documents", "render --spec {tmp}/two.yaml", ["spec='{tmp}/two.yaml'", "line 2, column 1"]),
    ("render-spec-empty", "render --spec {tmp}/empty.yaml", ["spec='{tmp}/empty.yaml'", "is empty"]),
    ("render-spec-only-comments", "render --spec {tmp}/comments.yaml", ["spec='{tmp}/comments.yaml'", "is empty"]),
    ("render-spec-negative-grace", "render --spec {tmp}/negative.yaml", ["negative.yaml", "terminationGracePeriodSeconds=-5"]),
    ("render-out-is-a-file", "render --out {tmp}/afile", ["--out='{tmp}/afile'", "not a directory"]),
    ("render-unknown-topology", "render --topology ring", ["--topology", "'ring'"]),
    # up
    ("up-spec-not-utf8", "up --spec {tmp}/latin1.yaml", ["spec='{tmp}/latin1.yaml'", "offset 26"]),
    ("up-spec-alias-bomb", "up --spec {tmp}/bomb.yaml", ["spec='{tmp}/bomb.yaml'", "alias bomb"]),
    ("up-spec-missing", "up --spec {tmp}/missing.yaml", ["spec='{tmp}/missing.yaml'", "no such file"]),
    ("up-spec-not-a-mapping", "up --spec {tmp}/list.yaml", ["spec='{tmp}/list.yaml'", "mapping", "list"]),
    ("up-spec-unknown-field", "up --spec {tmp}/unknown.yaml", ["replicaz=2", "unknown field"]),
    ("up-spec-wrong-type", "up --spec {tmp}/wrongtype.yaml", ["replicas='many'", "integer"]),
    ("up-state-file-under-a-file", "up --state-file {tmp}/afile/state.json",
     ["--state-file='{tmp}/afile/state.json'", "under '{tmp}/afile'"]),
    ("up-state-file-is-a-directory", "up --state-file {tmp}/adir", ["--state-file='{tmp}/adir'", "is a directory"]),
    ("up-workdir-is-a-file", "up --workdir {tmp}/afile", ["--workdir='{tmp}/afile'", "not a directory"]),
    ("up-zero-replicas", "up --replicas 0", ["replicas=0"]),
    ("up-negative-for-s", "up --for-s -1", ["--for-s=-1.0"]),
    # chaos run
    ("chaos-run-spec-not-utf8", "chaos run pod-kill --spec {tmp}/latin1.yaml --out {tmp}/out",
     ["spec='{tmp}/latin1.yaml'", "offset 26"]),
    ("chaos-run-out-is-a-file", "chaos run pod-kill --out {tmp}/afile", ["--out='{tmp}/afile'", "not a directory"]),
    ("chaos-run-out-under-a-file", "chaos run pod-kill --out {tmp}/afile/out", ["--out='{tmp}/afile/out'", "which is a file"]),
    ("chaos-run-missing-experiment", "chaos run no-such-fault --out {tmp}/out", ["experiment=", "no-such-fault.json", "no such file"]),
    ("chaos-run-experiment-bad-json", "chaos run {tmp}/bad.json --out {tmp}/out", ["experiment='{tmp}/bad.json'", "line 2, column 17"]),
    ("chaos-run-unknown-topology", "chaos run pod-kill --topology ring --out {tmp}/out", ["topology='ring'"]),
    ("chaos-run-unknown-preset", "chaos run pod-kill --preset weekly --out {tmp}/out", ["preset='weekly'"]),
    ("chaos-run-unknown-tier", "chaos run pod-kill --tier gold --out {tmp}/out", ["tier='gold'"]),
    ("chaos-run-sla-not-utf8", "chaos run pod-kill --sla {tmp}/latin1.yaml --out {tmp}/out", ["'{tmp}/latin1.yaml'", "offset 26"]),
    ("chaos-run-sla-bad-value", "chaos run pod-kill --sla {tmp}/sla-bad.yaml --out {tmp}/out", ["period_days=-7"]),
    ("chaos-run-sla-alias-bomb", "chaos run pod-kill --sla {tmp}/bomb.yaml --out {tmp}/out", ["'{tmp}/bomb.yaml'", "alias bomb"]),
    ("chaos-run-kubernetes-spec-not-utf8", "chaos run pod-kill --platform kubernetes --spec {tmp}/latin1.yaml --out {tmp}/out",
     ["spec='{tmp}/latin1.yaml'", "offset 26"]),
    # chaos matrix
    ("chaos-matrix-out-under-a-file", "chaos matrix --out {tmp}/afile/out", ["--out='{tmp}/afile/out'", "which is a file"]),
    ("chaos-matrix-unknown-fault", "chaos matrix --faults pod-kill,nope --out {tmp}/out", ["faults='nope'"]),
    ("chaos-matrix-unknown-topology", "chaos matrix --topologies single,ring --out {tmp}/out", ["topologies=", "ring"]),
    ("chaos-matrix-spec-yaml-syntax", "chaos matrix --spec {tmp}/syntax.yaml --out {tmp}/out", ["spec='{tmp}/syntax.yaml'", "line 3"]),
    ("chaos-matrix-experiments-is-a-file", "chaos matrix --experiments {tmp}/afile --out {tmp}/out",
     ["--experiments='{tmp}/afile'", "not a directory"]),
    ("chaos-matrix-experiments-empty", "chaos matrix --experiments {tmp}/adir --out {tmp}/out",
     ["--experiments='{tmp}/adir'", "no experiment files"]),
    # chaos validate
    ("chaos-validate-not-utf8", "chaos validate {tmp}/latin1.json", ["experiment='{tmp}/latin1.json'", "offset 14"]),
    ("chaos-validate-bad-json", "chaos validate {tmp}/bad.json", ["experiment='{tmp}/bad.json'", "not valid JSON at line 2"]),
    ("chaos-validate-empty", "chaos validate {tmp}/empty.json", ["experiment='{tmp}/empty.json'", "is empty"]),
    ("chaos-validate-not-a-mapping", "chaos validate {tmp}/list.json", ["experiment='{tmp}/list.json'", "mapping"]),
    ("chaos-validate-missing", "chaos validate {tmp}/missing.json", ["experiment='{tmp}/missing.json'", "no such file"]),
    ("chaos-validate-unknown-suffix", "chaos validate {tmp}/experiment.txt", ["experiment='{tmp}/experiment.txt'", ".json"]),
    # chaos spec, chaos without an action
    ("chaos-spec-spec-only-comments", "chaos spec pod-kill --spec {tmp}/comments.yaml", ["spec='{tmp}/comments.yaml'", "is empty"]),
    ("chaos-spec-unknown-topology", "chaos spec pod-kill --topology ring", ["topology='ring'"]),
    ("chaos-without-action", "chaos", ["choose an action"]),
    # sweep
    ("sweep-out-is-a-file", "sweep --out {tmp}/afile", ["--out='{tmp}/afile'", "not a directory"]),
    ("sweep-out-under-a-file", "sweep --out {tmp}/afile/out", ["--out='{tmp}/afile/out'", "which is a file"]),
    ("sweep-unknown-preset", "sweep --preset weekly --out {tmp}/out", ["preset='weekly'"]),
    ("sweep-unknown-precision", "sweep --precisions fp8 --out {tmp}/out", ["precisions='fp8'"]),
    ("sweep-batch-sizes-not-integers", "sweep --batch-sizes a,b --out {tmp}/out", ["--batch-sizes='a,b'"]),
    ("sweep-negative-window", "sweep --window-s -1 --out {tmp}/out", ["window_s=-1.0"]),
    # capacity
    ("capacity-out-under-a-file", "capacity --target-rps 10 --p99-ms 100 --out {tmp}/afile/out", ["--out='{tmp}/afile/out'"]),
    ("capacity-unknown-precision", "capacity --target-rps 10 --p99-ms 100 --precision fp8 --out {tmp}/out", ["--precision='fp8'"]),
    ("capacity-negative-target", "capacity --target-rps -5 --p99-ms 100 --out {tmp}/out", ["target_rps=-5.0"]),
    # load
    ("load-out-is-a-file", "load --duration-s 1 --out {tmp}/afile", ["--out='{tmp}/afile'", "not a directory"]),
    ("load-spec-not-utf8", "load --duration-s 1 --spec {tmp}/latin1.yaml --out {tmp}/out", ["spec='{tmp}/latin1.yaml'"]),
    ("load-negative-duration", "load --duration-s -1 --out {tmp}/out", ["duration_s=-1.0"]),
    ("load-unknown-model", "load --duration-s 1 --model nope --out {tmp}/out", ["model='nope'"]),
    ("load-unknown-fault", "load --duration-s 1 --inject-fault nope --out {tmp}/out", ["--inject-fault='nope'"]),
    ("load-bad-fault-param", "load --duration-s 1 --inject-fault slow-inference --fault-param factor --out {tmp}/out",
     ["--fault-param='factor'"]),
    ("load-unknown-profile", "load --duration-s 1 --profile weekly --out {tmp}/out", ["--profile", "'weekly'"]),
    ("load-missing-out", "load --duration-s 1", ["--out", "required"]),
    # run
    ("run-unknown-preset", "run weekly", ["PRESET", "'weekly'"]),
    ("run-out-is-a-file", "run tiny --out {tmp}/afile", ["--out='{tmp}/afile'", "not a directory"]),
    ("run-sla-empty", "run tiny --sla {tmp}/empty.yaml --out {tmp}/out", ["'{tmp}/empty.yaml'", "is empty"]),
    ("run-kubernetes-spec-alias-bomb", "run tiny --platform kubernetes --spec {tmp}/bomb.yaml --out {tmp}/out",
     ["spec='{tmp}/bomb.yaml'", "alias bomb"]),
    ("run-local-with-spec", "run tiny --spec {tmp}/unknown.yaml --out {tmp}/out", ["{tmp}/unknown.yaml: ", "replicaz=2"]),
    # report, compare
    ("report-dir-is-a-file", "report {tmp}/afile", ["DIR='{tmp}/afile'", "not a directory"]),
    ("report-baseline-is-a-file", "report {tmp}/adir --baseline {tmp}/afile", ["--baseline='{tmp}/afile'"]),
    ("compare-dir-is-a-file", "compare {tmp}/afile --baseline {tmp}/adir", ["DIR='{tmp}/afile'"]),
    ("compare-alpha-out-of-range", "compare {tmp}/adir --baseline {tmp}/adir --alpha 2", ["--alpha=2.0"]),
    # serve
    ("serve-config-not-utf8", "serve --config {tmp}/latin1.yaml", ["config='{tmp}/latin1.yaml'", "offset 26"]),
    ("serve-config-empty", "serve --config {tmp}/empty.yaml", ["config='{tmp}/empty.yaml'", "is empty"]),
    ("serve-config-yaml-syntax", "serve --config {tmp}/syntax.yaml", ["config='{tmp}/syntax.yaml'", "line 3, column 5"]),
    ("serve-unknown-model", "serve --model nope", ["model='nope'"]),
    ("serve-unknown-precision", "serve --precision fp8", ["--precision", "'fp8'"]),
    ("serve-port-out-of-range", "serve --port 99999", ["port=99999"]),
    # preflight
    ("preflight-negative-ports", "preflight --ports -1", ["--ports=-1"]),
    ("preflight-weights-dir-is-a-file", "preflight --weights-dir {tmp}/afile", ["--weights-dir='{tmp}/afile'"]),
    # bench
    ("bench-service-unknown-model", "bench service --model nope", ["model='nope'"]),
    ("bench-service-zero-rounds", "bench service --rounds 0", ["rounds=0"]),
    ("bench-stall-bad-stalls", "bench stall --stalls-s a,b", ["--stalls-s='a,b'"]),
    ("bench-stall-unknown-model", "bench stall --model nope", ["--model='nope'"]),
    # cleanup, the command itself
    ("cleanup-unknown-flag", "cleanup --bogus", ["unrecognized arguments: --bogus"]),
    ("unknown-command", "bogus", ["invalid choice: 'bogus'"]),
]


def _write_inputs(directory: Path) -> None:
    for name, content in FILES.items():
        path = directory / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    for name in DIRS:
        (directory / name).mkdir()


def _tree(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


class _Tripwire(AssertionError):
    pass


@pytest.fixture
def workplace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """tmp_path as the current directory, the inputs written, and every way to deploy a tripwire."""
    tmp = tmp_path.resolve()
    _write_inputs(tmp)
    (tmp / "system-tmp").mkdir()  # `harness up` makes its default workdir with tempfile
    monkeypatch.setattr("tempfile.tempdir", str(tmp / "system-tmp"))
    monkeypatch.chdir(tmp)
    for name in ("HARNESS_SPEC", "HARNESS_ENDPOINT", "HARNESS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)

    def tripwire(*args, **kwargs):
        raise _Tripwire(f"bad input started something: {args[:1]!r}")

    monkeypatch.setattr(subprocess, "Popen", tripwire)  # every child process, replicas to git
    monkeypatch.setattr("harness.service.server.serve", tripwire)  # `harness serve` serves in-process
    return tmp


def _argv(template: str, tmp: Path) -> list[str]:
    return template.format(tmp=tmp).split()


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[:2000]}"
    assert "Traceback" not in err and lines[0].startswith("harness") and ": error: " in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0][:600]
    return lines[0]


@pytest.mark.parametrize("argv, expected", [pytest.param(argv, expected, id=case) for case, argv, expected in CASES])
def test_a_bad_input_is_one_line_naming_it_and_nothing_is_deployed(workplace, capsys, argv, expected):
    before, cgroups = _tree(workplace), owned_cgroup_dirs(os.getpid())
    code = main(_argv(argv, workplace))
    out, err = capsys.readouterr()
    line = _one_error_line(err)
    assert code == 2, line
    for part in expected:
        assert part.format(tmp=workplace) in line, f"{part.format(tmp=workplace)!r} not in {line!r}"
    assert out == ""
    assert _tree(workplace) == before, f"written: {sorted(map(str, _tree(workplace) - before))}"
    assert owned_cgroup_dirs(os.getpid()) == cgroups


def test_the_table_covers_every_command_with_at_least_40_cases():
    commands = {argv.split()[0] if argv.split()[0] not in ("chaos", "bench") else " ".join(argv.split()[:2])
                for _, argv, _ in CASES}
    assert len(CASES) >= 40 and len({case for case, _, _ in CASES}) == len(CASES)
    assert commands >= {"run", "load", "chaos run", "chaos matrix", "chaos validate", "chaos spec", "sweep", "capacity",
                        "up", "render", "report", "compare", "serve", "preflight", "bench service", "bench stall",
                        "cleanup"}


def _unwritable_dir(tmp: Path) -> Path:
    """A directory this process cannot create entries in; skip when there is none to be had."""
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):
        return locked
    locked.chmod(0o700)  # root: mode bits do not bind it; procfs refuses root new entries all the same
    locked.rmdir()
    proc = Path("/proc/self").resolve()
    if proc.is_dir() and not os.access(proc, os.W_OK):
        return proc
    pytest.skip("no unwritable directory: running as root, where chmod 500 does not bind, and no procfs")


@pytest.mark.parametrize("argv, flag", [
    ("load --duration-s 1 --out {ro}/out", "--out"),
    ("sweep --out {ro}/out", "--out"),
    ("chaos run pod-kill --out {ro}/out", "--out"),
    ("up --state-file {ro}/state.json", "--state-file"),
    ("render --out {ro}/k8s", "--out"),
], ids=["load", "sweep", "chaos-run", "up-state-file", "render"])
def test_an_output_that_cannot_be_written_is_refused_before_anything_runs(workplace, capsys, argv, flag):
    ro = _unwritable_dir(workplace)
    try:
        before = _tree(workplace)
        assert main(argv.format(ro=ro).split()) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"{flag}='{ro}/" in line and "not writable" in line, line
        assert _tree(workplace) == before
    finally:
        if ro.is_relative_to(workplace):
            ro.chmod(0o700)


@pytest.mark.parametrize("case", ["render-spec-not-utf8", "up-spec-alias-bomb", "sweep-out-under-a-file",
                                  "chaos-validate-bad-json", "run-unknown-preset"])
def test_no_traceback_reaches_the_terminal(tmp_path, case):
    tmp = tmp_path.resolve()
    _write_inputs(tmp)
    argv, expected = next((argv, expected) for name, argv, expected in CASES if name == case)
    before = _tree(tmp)
    done = subprocess.run([sys.executable, "-m", "harness", *_argv(argv, tmp)], cwd=tmp, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = _one_error_line(done.stderr)
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout)
    assert all(part.format(tmp=tmp) in line for part in expected), line
    assert _tree(tmp) == before
