"""The ``orbitwatch datasets`` and ``orbitwatch evals`` commands, run as a user would (subprocess)."""
from __future__ import annotations

import json

import orbitwatch
from orbitwatch.storage import Storage, migrate


def test_datasets_and_runs_cli(orbitwatch_cli, tmp_path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(i) for i in [
        {"input": "What is 2+2?", "expected_output": "4"},
        {"input": "What is 3+3?", "expected_output": "6"}]) + "\n")
    st = Storage(dsn)
    migrate(st)
    st.close()
    out = orbitwatch_cli("datasets", "push", "math", str(items), "--project", "p", "--clickhouse", dsn)
    assert out.returncode == 0, out.stderr
    assert "p/math: version 1, 2 items" in out.stdout
    shown = orbitwatch_cli("datasets", "show", "math", "--project", "p", "--clickhouse", dsn, "--json")
    data = json.loads(shown.stdout)
    assert data["version"] == 1 and len(data["items"]) == 2

    st = Storage(dsn)  # the CLI process has exited: the directory is ours again
    try:
        r1 = orbitwatch.evaluate("math", lambda it: "4", ["equals"], "always-4", project="p", trace=False, storage=st)
        r2 = orbitwatch.evaluate("math", lambda it: str(eval(it["input"][8:-1])), ["equals"], "calc", project="p",
                                 trace=False, storage=st)
    finally:
        st.close()
    runs = orbitwatch_cli("evals", "runs", "--project", "p", "--clickhouse", dsn, "--json")
    assert {r["name"]: r["scores"]["equals"] for r in json.loads(runs.stdout)} == {"always-4": 0.5, "calc": 1.0}
    cmp = orbitwatch_cli("evals", "compare", r1.run_id, r2.run_id, "--clickhouse", dsn)
    assert cmp.returncode == 0, cmp.stderr
    assert "equals" in cmp.stdout and "+0.500" in cmp.stdout
    show = orbitwatch_cli("evals", "show", r2.run_id, "--clickhouse", dsn)
    assert "calc" in show.stdout and "1.000" in show.stdout
    missing = orbitwatch_cli("evals", "show", "nope", "--clickhouse", dsn)
    assert missing.returncode == 2 and "no evaluation run" in missing.stderr


def test_score_and_check_rules_cli(orbitwatch_cli, tmp_path):
    out = orbitwatch_cli("evals", "score", "--input", "When was the tower completed?", "--output",
                         "It was completed in 1925.", "--context", "The tower was completed in 1889.", "--json")
    res = {r["name"]: r for r in json.loads(out.stdout)}
    assert res["hallucination"]["value"] == 1.0 and "1925" in res["hallucination"]["reason"]
    assert res["context_recall"]["value"] is None
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: rag\n    sampling: 0.2\n    metrics: [hallucination, judge_answer_relevance]\n")
    ok = orbitwatch_cli("evals", "check-rules", str(rules))
    assert ok.returncode == 0 and "rag: llm spans" in ok.stdout and "judge_answer_relevance" in ok.stdout
    rules.write_text("rules:\n  - name: rag\n    metrics: [halucination]\n")
    bad = orbitwatch_cli("evals", "check-rules", str(rules))
    assert bad.returncode == 2 and "unknown metric 'halucination'" in bad.stderr
