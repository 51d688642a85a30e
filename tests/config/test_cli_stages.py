"""A stage whose module fails to import is a clear error, not a silently missing subcommand (issue #13 point 5)."""

from __future__ import annotations

import cptkit.cli as cli


def test_broken_stage_is_listed_and_running_it_names_the_import_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "STAGE_MODULES", (*cli.STAGE_MODULES, "cptkit.nosuchstage.cli"))
    assert cli.main(["nosuchstage", "anything", "--flag"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cptkit nosuchstage: error: cannot import cptkit.nosuchstage.cli: ModuleNotFoundError")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    help_text = cli.build_parser().format_help()
    assert "nosuchstage" in help_text and "UNAVAILABLE" in help_text
    # The other stages still work.
    assert cli.main(["mix", "schema"]) == 0


def test_a_dependency_missing_inside_a_stage_is_reported_too(monkeypatch, capsys):
    real = cli.importlib.import_module

    def fake(name):
        if name == "cptkit.eval.cli":
            raise ImportError("No module named 'lm_eval'")
        return real(name)

    monkeypatch.setattr(cli.importlib, "import_module", fake)
    assert cli.main(["eval", "x"]) == 2
    assert "cannot import cptkit.eval.cli: ImportError: No module named 'lm_eval'" in capsys.readouterr().err
    # Not blind: with the real import the stage registers normally (its own usage error, not ours).
    monkeypatch.setattr(cli.importlib, "import_module", real)
    assert "UNAVAILABLE" not in cli.build_parser().format_help()
