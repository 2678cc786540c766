"""The MovieLens bench (bench/gnn/movielens.py) on a tiny data set in the layout of RecBole's wheel, and its metrics."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from bench.gnn import movielens

N_USERS, N_ITEMS = 40, 30
JOBS = ("writer", "engineer")


def tiny_wheel(path) -> None:
    """Write a zip with ml-100k's five atomic files: users of two occupations, each drawn to one half of the items."""
    rng = np.random.default_rng(3)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    for u in range(1, N_USERS + 1):
        job = JOBS[u % 2]
        users.append(f"{u}\t30\tM\t{job}\t00000")
        half = np.arange(1, N_ITEMS // 2 + 1) + (N_ITEMS // 2 if job == "engineer" else 0)
        for k, item in enumerate(rng.choice(half, size=9, replace=False)):
            inter.append(f"{u}\t{item}\t4\t{880000000 + 100 * u + k}")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [
        f"{i}\tMovie {i}\t1995\t{'Drama' if i <= N_ITEMS // 2 else 'Action Comedy'}" for i in range(1, N_ITEMS + 1)
    ]
    link = ["item_id:token\tentity_id:token"] + [f"{i}\tm.{i}" for i in range(1, N_ITEMS + 1)]
    kg = ["head_id:token\trelation_id:token\ttail_id:token"]
    kg += [f"m.{i}\tfilm.film.directed_by\tm.director{i % 4}" for i in range(1, N_ITEMS + 1)]
    kg += [f"m.director{i % 4}\tfilm.director.film\tm.{i}" for i in range(1, N_ITEMS + 1)]
    with zipfile.ZipFile(path, "w") as archive:
        for ext, lines in (("inter", inter), ("user", users), ("item", items), ("link", link), ("kg", kg)):
            archive.writestr(f"{movielens.INSIDE}.{ext}", "\n".join(lines) + "\n")


def test_metrics_are_recboles_recall_and_ndcg():
    got = movielens.metrics({"u": ["a", "x", "b"]}, ["u"], {"u": {"a", "b", "c"}}, {"u": ["g"]})
    assert got["recall20"][0] == pytest.approx(2 / 3)
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert got["ndcg20"][0] == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    with pytest.raises(ValueError, match="given item"):
        movielens.metrics({"u": ["g", "a"]}, ["u"], {"u": {"a"}}, {"u": ["g"]})


def test_the_catalog_makes_movies_part_of_their_genres_and_shared_entities(tmp_path):
    tiny_wheel(tmp_path / "w.zip")
    ml = movielens.read_movielens(tmp_path / "w.zip")
    assert len(ml.ratings) == N_USERS and all(len(v) == 9 for v in ml.ratings.values())
    assert all(a[0] <= b[0] for v in ml.ratings.values() for a, b in zip(v, v[1:], strict=False))  # in time order
    quads, sizes = movielens.catalog_quads(ml, min_items=3)
    assert sizes == {"entities": 4, "entity_links": N_ITEMS}  # film.film.* relations only, not their reverses
    part_of = {(q.subject.value, q.object.value) for q in quads if q.predicate == movielens.vocab.PART_OF}
    assert (movielens.item_iri("20"), movielens.BASE + "genre/Comedy") in part_of
    assert (movielens.item_iri("5"), movielens.BASE + "entity/m.director1") in part_of


def test_the_bench_ranks_cold_users_and_beats_popularity_where_occupation_decides(tmp_path):
    tiny_wheel(tmp_path / "w.zip")
    out = tmp_path / "movielens.json"
    args = ["--wheel", str(tmp_path / "w.zip"), "--recbole-env", str(tmp_path / "none"), "--folds", "4"]
    args += ["--members", "1", "--epochs", "40", "--given", "3", "--min-items", "2", "--out", str(out)]
    movielens.main(args)
    result = json.loads(out.read_text())
    pooled = result["pooled"]
    assert set(pooled) == {"gnn", "popularity", "occupation_popularity"}
    assert sum(f["test_users"] for f in result["folds"]) == N_USERS  # each user tested once, as a cold start
    assert "not run" in result["folds"][0]["recbole"]["recbole_kgat"]
    for row in pooled.values():
        assert 0 <= row["ndcg20_interval"][0] <= row["ndcg20"] <= row["ndcg20_interval"][1] <= 1
    # Each occupation uses its own half of the catalog: knowing it (or the given items) beats popularity.
    assert pooled["occupation_popularity"]["recall20"] > pooled["popularity"]["recall20"]
    assert pooled["gnn"]["recall20"] > pooled["popularity"]["recall20"]
    assert (out.with_suffix(".md")).read_text().count("| gnn |") == 1
