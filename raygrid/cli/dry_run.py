"""``raygrid plan``: what a spec will cost, before any GPU hour is spent on it.

::

    raygrid plan SPEC.toml [--address ADDR] [--json]

It reads the spec and its data, counts candidates, fits, shared trainings (fits scored
on the way through a longer one, :mod:`raygrid.run.prefix`) and fused groups, joins the
target (the cluster at ``ADDR``, else the Ray a search from here would use) and sizes the
slots the search would get. Then it runs a probe in each slot of the spec's size at once
(at most 8; workers that start together contend for a node's cores, as the search's
will), taking the slowest slot's timings: for each architecture (:func:`raygrid.run.plan.architecture_key`) it fits and scores
that architecture's longest candidate twice (the first time pays the framework's import
and the architecture's trace) and its shortest once, on the first CV split.

From those timings: a fit costs ``a + b × cost`` seconds, ``cost`` being
:func:`raygrid.run.plan.expected_cost` (epochs over batch size and the like), fitted
through each architecture's two warm fits; a shared training costs what its longest
member costs, plus the scoring of the others. The estimated wall time is the start of a
worker (and of a local Ray, when the plan had to start one: the search would too), plus
the import, plus every architecture's trace (each worker traces each
architecture it meets), plus the work spread over the slots (never less than the longest
training). Slot-hours are slots × wall time; GPU-hours, the GPUs those slots hold × wall
time; busy, the share of slot time spent fitting. Nothing of the search runs.

Exit codes: 0; 1 when a probe fit fails; 2 for bad input (a bad spec, an address where
nothing answers, a fit asking for more CPUs or GPUs than any node has), one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Estimate:
    """What ``raygrid plan`` prints (and gives as JSON)."""

    candidates: int
    folds: int
    fits: int
    trainings: int
    shared_trainings: int
    fused_groups: int
    architectures: int
    slots: int
    num_cpus_per_task: float
    num_gpus_per_task: float
    connect_s: float
    worker_start_s: float
    import_s: float
    trace_s: float
    work_s: float
    estimated_wall_s: float
    slot_hours: float
    gpu_hours: float
    busy: float


def probe(estimator: Any, X: Any, y: Any, split: tuple, groups: list[list[dict]]) -> dict:
    """In a slot: per architecture, fit and score its longest candidate twice, its shortest once.

    Returns
    -------
    dict
        ``started`` (epoch seconds when the task began) and, per architecture, the seconds
        of ``cold``, ``warm_long`` and ``warm_short`` (fit + score on ``split``).
    """
    from sklearn.base import clone
    from sklearn.utils.metaestimators import _safe_split

    from raygrid.run.worker import prepare_process

    started = time.time()
    import ray

    resources = ray.get_runtime_context().get_assigned_resources()
    prepare_process(resources.get("CPU", 1), resources.get("GPU", 0))
    train, test = split
    timings = []
    for longest, shortest in groups:
        seconds = []
        for params in (longest, longest, shortest):
            model = clone(estimator).set_params(**clone(params, safe=False))
            X_train, y_train = _safe_split(model, X, y, train)
            X_test, y_test = _safe_split(model, X, y, test, train)
            start = time.perf_counter()
            model.fit(X_train, y_train)
            model.score(X_test, y_test)
            seconds.append(time.perf_counter() - start)
        timings.append(dict(zip(("cold", "warm_long", "warm_short"), seconds, strict=True)))
    return {"started": started, "timings": timings}


class FitWorkerProbe:
    """The probe's actor (its name makes :mod:`raygrid.local.quiet` drop framework chatter)."""

    def run(self, *args: Any) -> dict:
        """See :func:`probe`."""
        return probe(*args)


def _units(spec: Any, search: Any, candidates: list[dict], n_splits: int) -> tuple[list, int, int]:
    """The search's units of work as its first wave would plan them; (units, shared, fused)."""
    from raygrid.run import plan

    tasks = plan.plan_tasks(candidates, n_splits)
    fused: list = []
    if search._ray_option("fuse"):
        fused, tasks = plan.fuse_fits(tasks, search.estimator)
    units = (
        plan.share_prefixes(tasks, search.estimator)
        if search._ray_option("share_prefixes")
        else tasks
    )
    shared = sum(isinstance(u, plan.PrefixGroup) for u in units)
    return fused + list(units), shared, len(fused)


def _architectures(candidates: list[dict]) -> dict[tuple, list[dict]]:
    from raygrid.run.plan import architecture_key

    found: dict[tuple, list[dict]] = {}
    for params in candidates:
        found.setdefault(architecture_key(params), []).append(params)
    return found


def _unit_seconds(unit: Any, model: dict[tuple, tuple[float, float, float]]) -> float:
    """A unit's estimated seconds: its longest member's training plus the others' scoring."""
    from raygrid.run.plan import architecture_key, expected_cost

    members = [t.params for t in getattr(unit, "tasks", (unit,))]
    a, b, score = model[architecture_key(members[0])]
    longest = max(expected_cost(p) for p in members)
    if type(unit).__name__ == "FusedGroup":  # an upper bound: fused stacks train faster
        return sum(a + b * expected_cost(p) for p in members)
    return a + b * longest + score * (len(members) - 1)


def _fit_line(timing: dict, longest: dict, shortest: dict) -> tuple[float, float, float]:
    """``(a, b, score)`` of ``seconds = a + b × cost`` through an architecture's warm fits."""
    from raygrid.run.plan import expected_cost

    high, low = expected_cost(longest), expected_cost(shortest)
    if high > low:
        b = max(0.0, (timing["warm_long"] - timing["warm_short"]) / (high - low))
        a = max(0.0, timing["warm_short"] - b * low)
    else:
        a, b = (timing["warm_long"] + timing["warm_short"]) / 2, 0.0
    return a, b, min(timing["warm_short"], timing["warm_long"]) * 0.1


def _probe_on(
    slot: Any, n_slots: int, search: Any, data: Any, split: tuple, groups: list
) -> tuple[dict, float]:
    """Run :func:`probe` in every slot at once (at most 8), as the search starts its workers.

    Workers that start together contend for the node's cores (imports, traces), so each
    timing is the slowest slot's. Returns (the timings, seconds until the last started).
    """
    import ray

    worker = ray.remote(FitWorkerProbe).options(num_cpus=slot.num_cpus, num_gpus=slot.num_gpus)
    workers = [worker.remote() for _ in range(min(n_slots, 8))]
    submitted = time.time()
    try:
        refs = [w.run.remote(search.estimator, data.X, data.y, split, groups) for w in workers]
        results = ray.get(refs)
    finally:
        for w in workers:
            ray.kill(w)
    timings = [
        {key: max(r["timings"][i][key] for r in results) for key in results[0]["timings"][i]}
        for i in range(len(groups))
    ]
    started = max(r["started"] for r in results)
    return {"timings": timings}, max(0.0, started - submitted)


def _start_costs(timings: list[dict]) -> tuple[float, float]:
    """(import, traces) seconds: the first architecture's cold fit pays both, the others a trace."""
    colds = [t["cold"] - t["warm_long"] for t in timings]
    others = colds[1:]
    one_trace = sum(others) / len(others) if others else 0.0
    return max(0.0, colds[0] - one_trace), sum(others) + one_trace


def estimate(spec: Any, address: str | None) -> Estimate:
    """Count, probe and estimate (see the module docstring); raises ValueError for bad input."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import check_cv

    from raygrid.local import connect
    from raygrid.run.plan import expected_cost

    data = spec.load_data()
    search = spec.build_search(ray_address=address)
    candidates = [dict(c) for c in spec.candidates()]
    cv = check_cv(search.cv, data.y, classifier=is_classifier(search.estimator))
    splits = list(cv.split(data.X, data.y, data.fit_params.get("groups")))
    units, shared, fused = _units(spec, search, candidates, len(splits))
    slot = search._slot()
    started = time.perf_counter()
    connect.connect(address)
    connect_s = time.perf_counter() - started  # a search from a fresh process pays it too
    n_slots = search._n_slots(slot)  # ValueError when no node holds one slot
    archs = _architectures(candidates)
    groups = [[max(ps, key=expected_cost), min(ps, key=expected_cost)] for ps in archs.values()]
    result, start_s = _probe_on(slot, n_slots, search, data, splits[0], groups)
    model = {
        key: _fit_line(timing, *pair)
        for key, timing, pair in zip(archs, result["timings"], groups, strict=True)
    }
    seconds = [_unit_seconds(u, model) for u in units]
    import_s, trace = _start_costs(result["timings"])
    work = sum(seconds)
    wall = connect_s + start_s + import_s + trace + max(work / n_slots, max(seconds, default=0.0))
    return Estimate(
        candidates=len(candidates),
        folds=len(splits),
        fits=len(candidates) * len(splits),
        trainings=len(units),
        shared_trainings=shared,
        fused_groups=fused,
        architectures=len(archs),
        slots=n_slots,
        num_cpus_per_task=slot.num_cpus,
        num_gpus_per_task=slot.num_gpus,
        connect_s=connect_s,
        worker_start_s=start_s,
        import_s=import_s,
        trace_s=trace,
        work_s=work,
        estimated_wall_s=wall,
        slot_hours=n_slots * wall / 3600,
        gpu_hours=n_slots * slot.num_gpus * wall / 3600,
        busy=min(1.0, work / (n_slots * wall)),
    )


def format_estimate(path: str, est: Estimate) -> str:
    """The plan as a few lines of text."""
    gpu = f", {est.num_gpus_per_task:g} GPU" if est.num_gpus_per_task else ""
    return "\n".join(
        [
            f"raygrid plan: {path}: {est.candidates} candidates × {est.folds} folds = {est.fits} fits",
            f"  as {est.trainings} trainings ({est.shared_trainings} shared by fits of several "
            f"lengths, {est.fused_groups} fused groups), {est.architectures} architecture(s)",
            f"  slots: {est.slots} of {est.num_cpus_per_task:g} CPU{gpu}",
            f"  probe: Ray start/connect {est.connect_s:.1f} s, worker start "
            f"{est.worker_start_s:.1f} s, import {est.import_s:.1f} s, "
            f"traces {est.trace_s:.1f} s, fitting {est.work_s:.1f} s in all",
            f"  estimated wall time {est.estimated_wall_s:.1f} s; {est.slot_hours:.3g} slot-hours, "
            f"{est.gpu_hours:.3g} GPU-hours; slots busy {est.busy:.0%}",
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Run ``raygrid plan``; see the module docstring for the exit codes."""
    from raygrid.spec.search_spec import load_spec

    spec = load_spec(args.spec)  # a SpecError is reported by the command line (exit 2)
    try:
        est = estimate(spec, args.address)
    except (ConnectionError, ValueError) as exc:
        print(f"raygrid plan: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a probe fit that fails: the search would fail the same way
        print(f"raygrid plan: a probe fit failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(est), indent=2))
    else:
        print(format_estimate(args.spec, est))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``raygrid plan`` on the command line's subparsers."""
    parser = sub.add_parser(
        "plan",
        help="estimate a spec's wall time, slot-hours and GPU-hours without running it",
        description="Count a spec's fits, run one probe per architecture on the target, "
        "and estimate wall time, slot-hours and GPU-hours, without starting the search.",
    )
    parser.add_argument("spec", metavar="SPEC", help="the search spec (TOML)")
    parser.add_argument(
        "--address", metavar="ADDR", help="the cluster's Ray address (default: as a search)"
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(func=run)
