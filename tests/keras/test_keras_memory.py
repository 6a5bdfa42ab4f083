"""A long-lived worker process must not grow with the number of fits."""

import keras
import psutil
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

from raygrid.keras import KerasClassifier

X, y = make_classification(
    n_samples=300, n_features=20, n_informative=10, n_classes=3, random_state=42
)
X = StandardScaler().fit_transform(X)


def build(hidden, n_features_in_, n_classes_):
    return keras.Sequential(
        [
            keras.Input((n_features_in_,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(n_classes_, activation="softmax"),
        ]
    )


def one_fit(i):
    """The i-th fit of a seed-grid-like sweep: mostly the default network, every fourth a
    user model (built afresh each fit), every twentieth through model.fit (a callback)."""
    units = (32, 64, 128)[i % 3]
    common = dict(learning_rate=(0.001, 0.01)[i % 2], epochs=2, random_state=i)
    if i % 20 == 19:
        stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1)
        return KerasClassifier(units=units, callbacks=[stop], **common)
    if i % 4 == 3:
        return KerasClassifier(model=build, model__hidden=units, **common)
    return KerasClassifier(units=units, batch_size=(16, 32, 64)[(i // 3) % 3], **common)


def test_rss_stays_flat_over_200_fits():
    process = psutil.Process()
    rss = []
    for i in range(200):
        est = one_fit(i).fit(X[:200], y[:200])
        est.score(X[200:], y[200:])
        rss.append(process.memory_info().rss)
    growth_mb = (rss[-1] - rss[19]) / 2**20
    print(
        f"RSS after 20 fits {rss[19] / 2**20:.1f} MB, growth over the next 180: {growth_mb:.1f} MB"
    )
    assert growth_mb < 50
