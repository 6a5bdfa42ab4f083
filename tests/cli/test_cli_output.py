"""Where `raygrid run` / `raygrid submit` put results: --output, read-back, fetch commands."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from raygrid.cli import main as cli
from raygrid.cli import submit
from raygrid.store.results import RESULTS_FILE, read_output

TINY_SPEC = """
[estimator]
class = "sklearn.tree.DecisionTreeClassifier"

[search]
param_grid = {{ max_depth = [1, 2, 3] }}
cv = 3
verbose = 0

[data]
generator = "make_classification"

[data.args]
n_samples = 60
random_state = 0
{output}
"""


def write_spec(folder: Path, output: str | None) -> Path:
    spec = folder / "tiny.toml"
    table = f'\n[output]\npath = "{output}"\n' if output is not None else ""
    spec.write_text(TINY_SPEC.format(output=table))
    return spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_output_uri_turns_local_paths_into_file_uris(tmp_path: Path) -> None:
    assert submit.output_uri(str(tmp_path / "r")) == f"file://{tmp_path}/r"
    assert submit.output_uri("s3://bucket/runs/a") == "s3://bucket/runs/a"


@pytest.mark.parametrize(
    ("output", "copy"),
    [
        (
            "s3://bkt/raygrid/seed-gpu",
            "aws s3 cp --recursive s3://bkt/raygrid/seed-gpu ./seed-gpu",
        ),
        ("gs://bkt/x/run1/", "gcloud storage cp --recursive gs://bkt/x/run1/ ./run1"),
        ("gcs://bkt/run1", "gcloud storage cp --recursive gs://bkt/run1 ./run1"),
        (
            "hdfs://nn:8020/runs/r1",
            """python -c 'import pyarrow.fs as f; f.copy_files("hdfs://nn:8020/runs/r1", "./r1")'""",
        ),
    ],
)
def test_fetch_instructions_for_object_storage(output: str, copy: str) -> None:
    text = submit.fetch_instructions(output)
    lines = text.splitlines()
    assert lines[0].startswith(f"raygrid submit: results: {output} ")
    assert lines[2] == f"    {copy}"
    name = output.rstrip("/").rsplit("/", 1)[1]
    assert lines[3] == f"    raygrid report ./{name}"


def test_fetch_instructions_for_a_local_folder(tmp_path: Path) -> None:
    lines = submit.fetch_instructions(str(tmp_path / "out")).splitlines()
    assert lines[0].startswith(f"raygrid submit: results: file://{tmp_path}/out ")
    assert lines[-1] == f"    raygrid report {tmp_path}/out"
    lines = submit.fetch_instructions(f"file://{tmp_path}/out").splitlines()
    assert lines[-1] == f"    raygrid report {tmp_path}/out"


def test_run_output_option_replaces_the_specs_path(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, str(tmp_path / "from-spec"))
    uri = f"file://{tmp_path}/bucket/run1"
    assert cli.main(["run", str(spec), "--output", uri]) == 0
    out = capsys.readouterr().out
    assert f"results written to {uri} (3 candidates)" in out
    results, tasks, _ = read_output(uri)
    assert len(results) == 3 and len(tasks) == 9
    assert not (tmp_path / "from-spec").exists()


def test_run_output_option_without_an_output_table(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, None)
    assert cli.main(["run", str(spec), "--output", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert (tmp_path / "out" / RESULTS_FILE).is_file()


def test_run_fails_when_the_results_cannot_be_written(tmp_path: Path, capsys) -> None:
    """The exit status is tied to the results: a search whose results are lost fails."""
    spec = write_spec(tmp_path, None)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = cli.main(["run", str(spec), "--output", f"file://{blocker}/run"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"raygrid run: cannot write results to file://{blocker}/run" in err


def test_run_output_option_is_checked_like_the_spec(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, None)
    assert cli.main(["run", str(spec), "--output", "ftp://host/dir"]) == 2
    assert "[output].path: expected a local path or a URI with one of the schemes" in (
        capsys.readouterr().err
    )


def test_submit_output_option_satisfies_a_spec_without_output(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, None)
    address = f"http://127.0.0.1:{free_port()}"
    code = cli.main(["submit", str(spec), "--address", address, "--output", "s3://b/r"])
    err = capsys.readouterr().err
    assert code == 1  # nothing listens there; the spec itself was accepted
    assert err.startswith("raygrid submit: cannot reach the Ray Jobs API")
