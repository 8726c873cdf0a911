"""`modelmill doctor` on a real project: each finding with its fix, exit 1 when something is wrong."""

from typer.testing import CliRunner

from flows.cli import app
from modelmill import journal


def test_doctor_names_each_problem_with_the_command_that_fixes_it(project):
    (project / "data" / "labels.parquet").unlink()
    journal.begin(project, "import-labels", "abc.dir", exports=["e1"], paths=["/gone.json"])

    result = CliRunner().invoke(app, ["doctor", "-C", str(project)])

    assert result.exit_code == 1, result.output
    out = result.output
    assert "data.dvc records data version d1b52fe7e325dd574dd91c71580ba20c.dir" in out
    assert "FAIL  " in out and "missing labels.parquet" in out and "fix: dvc pull (or modelmill run)" in out
    assert "interrupted import-labels" in out and "fix: modelmill run (finishes it)" in out
    assert "digits-classifier@champion: none or not READY" in out
    assert "project lock free" in out and "problem(s)" in out
