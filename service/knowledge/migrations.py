"""Store layout versions, and the migrations that bring an older store up to this release's.

A store records its layout version in the graph ``graph/meta`` (``wf:layoutVersion``
of ``https://w3id.org/wayfinder/store``). A new store gets this release's version;
a store of an earlier layout is refused when it opens, with a message that says to
run ``wayfinder migrate``, which applies each step in turn and records each new
version with the step's last change. Steps can run again: one interrupted by a
crash is simply repeated. A store of a newer layout is refused: this release
cannot read it. Migrations never touch the audit graph, so ``wayfinder audit
verify`` checks records written before them as they were written.

Layouts:

1. Before versions were recorded: a store with an ontology graph and no version.
2. Consent records carry ``wf:recordedAt``, the service's own time, which orders
   them. Migrating stamps older records with their indicated time, but never later
   than the migration, so that a grant a client dated in the future no longer
   outranks the withdrawals that follow it; and reloads the ontology from
   ``ontology/wayfinder.ttl``, which declares the terms this layout uses.
3. A model version's status is a term, ``wf:modelStatus wf:ActiveVersion``, no
   longer the string ``wf:status "active"``. Migrating rewrites each status of the
   models graph and reloads the ontology, which declares the terms. Model version
   records are not in the audit chain (their status changes as versions are
   promoted and rolled back); the decisions that name a version are, and stay as
   they were written.
4. A decision record keeps every candidate in one ``wf:candidates`` literal (an
   ``rdf:JSON`` array) and only its returned steps as nodes, with step, score and
   rank. Migrating reloads the ontology, which declares ``wf:candidates``; records
   written before stay as they were (they are chained), and every reader takes
   both forms.
5. Policy versions are paced (``wf:pacing``; a version that names none by the
   ontology's ``wf:DefaultPacing``), and decision records keep what pacing held back
   (``wf:heldBack``). Migrating reloads the ontology, which declares the pacing terms
   and ``wf:DefaultPacing``; nothing else changes.
6. Decisions can be handed to e-mail and push senders: an outbox graph
   (``graph/outbox``) of ``wf:Delivery`` messages, a decision record's
   ``wf:hasDelivery``, the purpose ``wf:OnboardingMessages`` and the message events.
   Migrating reloads the ontology, which declares them; a catalog names its senders
   (``wf:Sender``) when it is loaded again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from service.clock import datetime_literal, now, parse_datetime
from service.errors import OutdatedStore
from service.knowledge import files as knowledge
from service.knowledge import vocab
from service.knowledge.store import GraphStore
from service.knowledge.validation import Validator

LAYOUT = 6


@dataclass(frozen=True)
class Context:
    """What a migration step may need besides the store."""

    ontology_file: Path
    validator: Validator


def layout_version(store: GraphStore) -> int | None:
    """Return the layout version the store records, or None when it records none."""
    quads = list(store.quads(subject=vocab.STORE_NODE, predicate=vocab.LAYOUT_VERSION, graph=vocab.META_GRAPH))
    return max((int(q.object.value) for q in quads if isinstance(q.object, ox.Literal)), default=None)


def stored_layout(store: GraphStore) -> int:
    """Return the store's layout: the recorded one; 1 for a store from before versions; this release's for a new one."""
    recorded = layout_version(store)
    if recorded is not None:
        return recorded
    return 1 if store.has_graph(vocab.ONTOLOGY_GRAPH) else LAYOUT


def version_quads(version: int) -> list[ox.Quad]:
    return [
        ox.Quad(
            vocab.STORE_NODE,
            vocab.LAYOUT_VERSION,
            ox.Literal(str(version), datatype=vocab.XSD_INTEGER),
            vocab.META_GRAPH,
        )
    ]


def check(store: GraphStore) -> None:
    """Record this release's layout in a new store; refuse an older or newer one with what to do."""
    layout = stored_layout(store)
    if layout == LAYOUT:
        if layout_version(store) is None:
            store.commit(add=version_quads(LAYOUT))
        return
    if layout > LAYOUT:
        raise OutdatedStore(
            f"the store has layout {layout}, written by a newer release; this release reads layout "
            f"{LAYOUT}: run the newer release, or restore a backup made before it"
        )
    raise OutdatedStore(
        f"the store has layout {layout}; this release needs layout {LAYOUT}: back it up "
        "(`wayfinder backup`), then run `wayfinder migrate --store ...` once, with the service stopped"
    )


def migrate(store: GraphStore, context: Context) -> list[str]:
    """Upgrade the store step by step to this release's layout; return what each step did."""
    done: list[str] = []
    layout = stored_layout(store)
    if layout > LAYOUT:
        check(store)
    while layout < LAYOUT:
        step = STEPS[layout]
        with store.write_lock:
            add, remove, said = step(store, context)
            current = list(
                store.quads(subject=vocab.STORE_NODE, predicate=vocab.LAYOUT_VERSION, graph=vocab.META_GRAPH)
            )
            store.commit(add=[*add, *version_quads(layout + 1)], remove=[*remove, *current])
        done.append(f"layout {layout} -> {layout + 1}: {said}")
        layout += 1
    if layout_version(store) is None:
        store.commit(add=version_quads(LAYOUT))
        done.append(f"a new store: layout {LAYOUT} recorded")
    return done


def _record_times(store: GraphStore, context: Context) -> tuple[list[ox.Quad], list[ox.Quad], str]:
    """Layout 1 to 2: stamp consent records with a record time no later than now; reload the ontology."""
    g = vocab.CONSENT_GRAPH
    stamped = {q.subject for q in store.quads(predicate=vocab.RECORDED_AT, graph=g)}
    cap = now()
    add = [
        ox.Quad(q.subject, vocab.RECORDED_AT, datetime_literal(min(parse_datetime(q.object.value), cap)), g)
        for q in store.quads(predicate=vocab.IS_INDICATED_AT_TIME, graph=g)
        if q.subject not in stamped and isinstance(q.object, ox.Literal)
    ]
    knowledge.load_files([context.ontology_file], store=store, validator=context.validator, graph="ontology")
    return add, [], f"{len(add)} consent records given a record time; ontology reloaded"


# Layout 2 named a model version's status by these strings.
_STATUS_TERMS = {
    "candidate": vocab.CANDIDATE_VERSION,
    "active": vocab.ACTIVE_VERSION,
    "retired": vocab.RETIRED_VERSION,
    "rolled-back": vocab.ROLLED_BACK_VERSION,
}


def _model_statuses(store: GraphStore, context: Context) -> tuple[list[ox.Quad], list[ox.Quad], str]:
    """Layout 2 to 3: a model version's status string becomes its wf:ModelStatus term; reload the ontology."""
    g = vocab.MODELS_GRAPH
    versions = {q.subject for q in store.quads(predicate=vocab.RDF_TYPE, object=vocab.MODEL_VERSION_CLASS, graph=g)}
    add, remove = [], []
    for q in store.quads(predicate=vocab.STATUS, graph=g):
        if not isinstance(q.object, ox.Literal) or q.subject not in versions:
            continue
        term = _STATUS_TERMS.get(q.object.value)
        if term is not None:
            remove.append(q)
            add.append(ox.Quad(q.subject, vocab.MODEL_STATUS, term, g))
    knowledge.load_files([context.ontology_file], store=store, validator=context.validator, graph="ontology")
    return add, remove, f"{len(add)} model version statuses written as terms; ontology reloaded"


def _candidate_sets(store: GraphStore, context: Context) -> tuple[list[ox.Quad], list[ox.Quad], str]:
    """Layout 3 to 4: reload the ontology, which declares the decision's candidate set; records stay as written."""
    knowledge.load_files([context.ontology_file], store=store, validator=context.validator, graph="ontology")
    return [], [], "ontology reloaded (decision records from now on keep their candidates in wf:candidates)"


def _pacing(store: GraphStore, context: Context) -> tuple[list[ox.Quad], list[ox.Quad], str]:
    """Layout 4 to 5: reload the ontology, which declares pacing and the pacing of versions that name none."""
    knowledge.load_files([context.ontology_file], store=store, validator=context.validator, graph="ontology")
    return [], [], "ontology reloaded (policy versions are paced; wf:DefaultPacing for those that name no pacing)"


def _delivery(store: GraphStore, context: Context) -> tuple[list[ox.Quad], list[ox.Quad], str]:
    """Layout 5 to 6: reload the ontology, which declares the outbox, the senders and their consent purpose."""
    knowledge.load_files([context.ontology_file], store=store, validator=context.validator, graph="ontology")
    return [], [], "ontology reloaded (decisions can be delivered to senders under ONBOARDING_MESSAGES consent)"


STEPS: dict[int, Callable[[GraphStore, Context], tuple[list[ox.Quad], list[ox.Quad], str]]] = {
    1: _record_times,
    2: _model_statuses,
    3: _candidate_sets,
    4: _pacing,
    5: _delivery,
}
