"""Train the seed README's LogisticRegression on scikit-learn's bundled iris data and save it.

No download: ``load_iris`` reads the copy shipped inside scikit-learn. Run from this folder:
``python train.py`` writes ``models/logistic_regression.pkl``.
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main(out: Path = Path(__file__).resolve().parent / "models" / "logistic_regression.pkl") -> Path:
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out)
    print(f"saved {out} (training accuracy {model.score(features, labels):.3f})")
    return out


if __name__ == "__main__":
    main()
