import pandas as pd

from emgeo_utils.claims import record as claims
from emgeo_utils.report import snapshot


def table(path, **changes):
    rows = [dict.fromkeys(claims.COLUMNS, "") | {"notebook": "03", "claim": "a", "value": 0.5, "verdict": "supports the paper"},
            dict.fromkeys(claims.COLUMNS, "") | {"notebook": "03", "claim": "b", "value": 0.1, "verdict": "inconclusive"}]
    rows[0] |= changes
    pd.DataFrame(rows, columns=claims.COLUMNS).to_csv(path, index=False)
    return path


def test_identical_tables_have_no_differences(tmp_path):
    assert snapshot.differences(table(tmp_path / "a.csv"), table(tmp_path / "b.csv")) == []


def test_a_moved_number_names_its_row_and_field(tmp_path):
    moved = snapshot.differences(table(tmp_path / "a.csv"), table(tmp_path / "b.csv", value=0.51, verdict="contradicts"))
    assert moved == ["03 a: value '0.5' -> '0.51'; verdict 'supports the paper' -> 'contradicts'"]


def test_check_fails_without_a_snapshot_or_on_a_difference(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(snapshot, "snapshot_file", lambda p: tmp_path / "results" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "fresh_file", lambda p: tmp_path / "fresh" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "signature_file", lambda p: tmp_path / "results" / p / "numerics.json")
    (tmp_path / "fresh" / "x").mkdir(parents=True)
    table(tmp_path / "fresh" / "x" / "claims.csv")
    assert snapshot.check(["x"]) == 1 and "no committed snapshot" in capsys.readouterr().out
    assert snapshot.update(["x"]) == 0 and snapshot.check(["x"]) == 0
    table(tmp_path / "fresh" / "x" / "claims.csv", value=0.7)
    assert snapshot.check(["x"]) == 1 and "03 a: value '0.5' -> '0.7'" in capsys.readouterr().out


def test_on_other_numerics_only_asserted_verdicts_must_match(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(snapshot, "snapshot_file", lambda p: tmp_path / "results" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "fresh_file", lambda p: tmp_path / "fresh" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "signature_file", lambda p: tmp_path / "results" / p / "numerics.json")
    (tmp_path / "fresh" / "x").mkdir(parents=True)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True")
    snapshot.update(["x"])
    monkeypatch.setattr(snapshot, "signature", lambda: {"mode": "pinned", "cpu_vendor": "GenuineIntel"})
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True", value=0.6)
    assert snapshot.check(["x"]) == 0 and "1 row(s) moved in value" in capsys.readouterr().out
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True", verdict="contradicts")
    assert snapshot.check(["x"]) == 1 and "03 a: verdict 'supports the paper' -> 'contradicts'" in capsys.readouterr().out
    table(tmp_path / "results" / "x" / "claims.csv", expected="record: differs between CPUs")
    assert snapshot.check(["x"]) == 0  # a record-only row may come out either way
    table(tmp_path / "results" / "x" / "claims.csv", expected="")
    assert snapshot.check(["x"]) == 0  # so may a row the profile does not list (measured: 00's discriminating row on Intel vs AMD)
    table(tmp_path / "results" / "x" / "claims.csv", expected="True")
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True",
          verdict="supports the paper (one-sided p < 0.05; the two-sided 95% CI still reaches the null)")
    assert snapshot.check(["x"]) == 0  # the verdict stands; only its qualifier moved (measured: 03 overlap_persona)


def test_one_snapshot_per_cpu_and_rows_that_differ_between_them(tmp_path, monkeypatch, capsys):
    """Each CPU signature keeps its own snapshot (a run compares bytes with its own); a row whose verdict differs
    between the snapshots of the current code reads "differs between CPUs"; one computed by other code is STALE."""
    monkeypatch.setattr(snapshot, "snapshot_file", lambda p: tmp_path / "results" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "fresh_file", lambda p: tmp_path / "fresh" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "signature_file", lambda p: tmp_path / "results" / p / "numerics.json")
    monkeypatch.setattr(snapshot, "code_fingerprint", lambda p: "code-1")
    amd = {"mode": "pinned", "cpu_vendor": "AuthenticAMD", "mkl_canary": "aaaaaaaa11"}
    intel = {"mode": "pinned", "cpu_vendor": "GenuineIntel", "mkl_canary": "bbbbbbbb22"}
    (tmp_path / "fresh" / "x").mkdir(parents=True)
    monkeypatch.setattr(snapshot, "signature", lambda: amd)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True")
    snapshot.update(["x"])
    monkeypatch.setattr(snapshot, "signature", lambda: intel)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True", value=0.45, verdict="inconclusive (CI spans the null)")
    snapshot.update(["x"])
    assert (tmp_path / "results" / "x" / "cpu" / "AuthenticAMD-aaaaaaaa" / "claims.csv").is_file()
    assert snapshot.check(["x"]) == 0 and "byte for byte" in capsys.readouterr().out  # Intel against its own
    monkeypatch.setattr(snapshot, "signature", lambda: amd)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True")
    assert snapshot.check(["x"]) == 0 and "byte for byte" in capsys.readouterr().out  # AMD against its own
    differs, stale = snapshot.across_cpus("x")
    assert differs == {("03", "a"): "differs between CPUs (GenuineIntel-bbbbbbbb: inconclusive; AuthenticAMD-aaaaaaaa: "
                                    "supports the paper)"} and stale == []
    frame = snapshot.with_cpu_agreement("x", pd.read_csv(tmp_path / "results" / "x" / "claims.csv", dtype={"notebook": str}))
    assert frame.verdict.iloc[0].startswith("differs between CPUs") and frame.verdict.iloc[1] == "inconclusive"
    monkeypatch.setattr(snapshot, "code_fingerprint", lambda p: "code-2")  # the code moved since both ran
    differs, stale = snapshot.across_cpus("x")
    assert differs == {} and len(stale) == 2 and all("STALE" in line for line in stale)


def test_a_stale_snapshot_of_this_cpu_reads_verdicts_against_the_latest(tmp_path, monkeypatch, capsys):
    """The other CPU's snapshot, computed by older code, cannot be compared byte for byte: its run reads the
    asserted verdicts against the latest snapshot instead, and says so."""
    monkeypatch.setattr(snapshot, "snapshot_file", lambda p: tmp_path / "results" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "fresh_file", lambda p: tmp_path / "fresh" / p / "claims.csv")
    monkeypatch.setattr(snapshot, "signature_file", lambda p: tmp_path / "results" / p / "numerics.json")
    amd = {"mode": "pinned", "cpu_vendor": "AuthenticAMD", "mkl_canary": "aaaaaaaa11"}
    intel = {"mode": "pinned", "cpu_vendor": "GenuineIntel", "mkl_canary": "bbbbbbbb22"}
    (tmp_path / "fresh" / "x").mkdir(parents=True)
    monkeypatch.setattr(snapshot, "code_fingerprint", lambda p: "old")
    monkeypatch.setattr(snapshot, "signature", lambda: intel)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True", value=0.9)
    snapshot.update(["x"])
    monkeypatch.setattr(snapshot, "code_fingerprint", lambda p: "new")
    monkeypatch.setattr(snapshot, "signature", lambda: amd)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True")
    snapshot.update(["x"])
    monkeypatch.setattr(snapshot, "signature", lambda: intel)
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True", value=0.6)
    assert snapshot.check(["x"]) == 0 and "(STALE)" in capsys.readouterr().out
    table(tmp_path / "fresh" / "x" / "claims.csv", expected="True", value=0.6, verdict="contradicts")
    assert snapshot.check(["x"]) == 1
