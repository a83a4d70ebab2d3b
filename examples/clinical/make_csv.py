"""Write `clinical.csv`: a synthetic clinical table, the same bytes for the same seed.

    python examples/clinical/make_csv.py [--rows 600] [--seed 7] [--out PATH]

Columns: age (years), sex (M/F), bmi, creatinine (mg/dL), smoker (never/former/current),
stage (1-3, a numeric code that is a category), outcome (disease/healthy, the target). The
outcome follows a logistic model of age, sex, creatinine, smoking and stage; about 8 % of the
creatinine cells and 4 % of the bmi cells are missing, written as a blank, NA or NaN as real
exports write them. No download: numpy only.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

HEADER = ["age", "sex", "bmi", "creatinine", "smoker", "stage", "outcome"]
MISSING_SPELLINGS = ("", "NA", "NaN")


def rows(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    age = rng.integers(25, 90, n)
    male = rng.random(n) < 0.5
    bmi = rng.normal(27, 4.5, n).clip(16, 50)
    creatinine = rng.lognormal(np.log(np.where(male, 1.0, 0.8)), 0.3)
    smoker = rng.choice(["never", "former", "current"], n, p=[0.5, 0.3, 0.2])
    stage = rng.integers(1, 4, n)
    logit = (-7.5 + 0.08 * age + 0.8 * male + 4.0 * (creatinine - 0.9)
             + 1.5 * (smoker == "current") + 0.6 * (smoker == "former") + 1.0 * (stage - 1))
    sick = rng.random(n) < 1 / (1 + np.exp(-logit))
    out = []
    for i in range(n):
        out.append([str(age[i]), "M" if male[i] else "F",
                    _cell(f"{bmi[i]:.1f}", rng, 0.04), _cell(f"{creatinine[i]:.2f}", rng, 0.08),
                    smoker[i], str(stage[i]), "disease" if sick[i] else "healthy"])
    return out


def _cell(text: str, rng: np.random.Generator, p_missing: float) -> str:
    if rng.random() < p_missing:
        return MISSING_SPELLINGS[rng.integers(len(MISSING_SPELLINGS))]
    return text


def write(path: Path, n: int = 600, seed: int = 7) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows(n, seed))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("clinical.csv"))
    args = ap.parse_args()
    print(write(args.out, args.rows, args.seed))


if __name__ == "__main__":
    main()
