"""fnnbench.cli.compose.Composer gives what Hydra's compose API gives (fast tier).

``Composer().compose(job, hydra=h)`` must equal ``hydra.compose("config", job,
return_hydra_config=h)`` for every kind of job the pool composes: each shipped claim's full
sweep and quick profile are expanded into jobs exactly as Hydra's basic sweeper expands them
(``BasicSweeper.split_arguments`` on ``hydra.sweeper.params`` + the task overrides of the
multirun config, as ``hydra._internal.hydra.Hydra.multirun`` hands them to the sweeper), and a
deterministic sample of jobs (first, middle, last) is composed both ways. The configs are
compared whole, ``hydra.runtime.output_dir`` included: the compose API leaves it ``???``
(Hydra's ``run_job`` sets it, in a job) and so does the Composer, which composes through it.
Then the override forms a command line can hold (``+key=``, ``~key``, ``++key=``, ``hydra.*``
values, a group after a value, dict values, packages), errors (same exception type, message
and cause as Hydra), the sweep's own config (``multirun=True`` vs Hydra's MULTIRUN
composition), and the cache: N jobs with k distinct lists of config-group choices cost k
compositions, and what one job's value overrides change never leaks into the next job.

One Hydra composition costs ~0.15 s (more on a loaded machine); the sample sizes keep the file
around half a minute.
"""

from __future__ import annotations

import pytest
from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from fnnbench.claims import load_claims
from fnnbench.cli.compose import Composer
from fnnbench.paths import CONF_DIR, SWEEPS_DIR

CLAIMS = load_claims(SWEEPS_DIR)
# what Hydra's defaults list treats as a config group (for the expected composition counts,
# computed independently of Composer._is_group): a folder of conf/ or of Hydra's own configs
GROUPS = {p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"}
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper", "hydra/job_logging", "hydra/hydra_logging")


@pytest.fixture
def hydra_session():
    with Composer.session():
        yield


def as_dict(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=False)


def hydra_multirun_config(overrides: list[str]):
    """The config Hydra composes for ``python -m fnnbench -m <overrides>`` before sweeping."""
    return GlobalHydra.instance().hydra.compose_config(
        "config", overrides=list(overrides), run_mode=RunMode.MULTIRUN)


def hydra_jobs(multirun_cfg) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches for this multirun config, in order: the
    sweeper's params, then the task overrides (BasicSweeper.sweep), split into jobs."""
    params = OmegaConf.to_container(multirun_cfg.hydra.sweeper.get("params") or {})
    task = list(multirun_cfg.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]
                                                      + task)
    batches = BasicSweeper.split_arguments(parsed, multirun_cfg.hydra.sweeper.get(
        "max_batch_size"))
    return [list(job) for batch in batches for job in batch]


def group_key(job: list[str]) -> tuple[str, ...]:
    """The overrides of a job that select configs (a config group's option)."""
    out = []
    for o in job:
        key = o.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        if key in GROUPS or key in HYDRA_GROUPS or key == "hydra.searchpath":
            out.append(o)
    return tuple(out)


def sample(jobs: list, n: int) -> list:
    """n jobs spread over the list: the first, the last and evenly spaced ones between."""
    if len(jobs) <= n:
        return list(jobs)
    idx = sorted({round(i * (len(jobs) - 1) / (n - 1)) for i in range(n)})
    return [jobs[i] for i in idx]


def assert_same(mine, ref, job: list[str], hydra: bool) -> None:
    mine, ref = as_dict(mine), as_dict(ref)
    if mine != ref:  # name the differing top-level keys (and hydra.* keys) before failing
        diff = sorted(k for k in set(mine) | set(ref) if mine.get(k) != ref.get(k))
        if "hydra" in diff:
            hm, hr = mine.get("hydra") or {}, ref.get("hydra") or {}
            diff += [f"hydra.{k}" for k in sorted(set(hm) | set(hr)) if hm.get(k) != hr.get(k)]
        pytest.fail(f"{job} (hydra={hydra}): Composer and hydra.compose differ at {diff}")
    # and in the same key order (the job's config.yaml artifact is written in this order)
    assert list(mine) == list(ref), job


def assert_same_as_hydra(composer: Composer, job: list[str], hydra: bool) -> None:
    assert_same(composer.compose(job, hydra=hydra),
                compose("config", overrides=list(job), return_hydra_config=hydra), job, hydra)


# ------------------------------------------------------------------ every shipped claim

@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_claim_sweep_jobs_compose_as_hydra_composes_them(hydra_session, claim):
    profiles = {}
    for profile, cmd in (("full", [f"sweep={claim.id}"]),
                         ("quick", [f"sweep={claim.id}", *claim.quick])):
        ref_multirun = hydra_multirun_config(cmd)
        if profile == "quick":  # swept values on the command line: left out, kept in task
            # the sweep's own config (what SweepCallback.start gets), as Hydra composes it
            assert as_dict(Composer().compose(cmd, multirun=True)) == as_dict(ref_multirun)
        profiles[profile] = hydra_jobs(ref_multirun)
    assert 1 <= len(profiles["quick"]) < len(profiles["full"])

    composer = Composer()
    full, quick = profiles["full"], profiles["quick"]
    # the full sweep: one job per list of group choices, then the sample; k compositions
    firsts = {group_key(j): j for j in reversed(full)}
    checked = sample(full, 3)
    for job in [*firsts.values(), *checked]:
        composer.compose(job, hydra=False)
    assert composer.compositions == len(firsts), sorted(firsts)
    assert composer.hits == len(checked)
    # the quick profile: every job, from the same cache (its group choices are the full's)
    new = {group_key(j) for j in quick} - set(firsts)
    for job in quick:
        composer.compose(job, hydra=False)
    assert composer.compositions == len(firsts) + len(new), sorted(new)
    assert composer.hits == len(checked) + len(quick) - len(new)

    for job in [*checked, *sample(quick, 2)]:
        ref = compose("config", overrides=list(job), return_hydra_config=True)
        mine = composer.compose(job, hydra=True)
        assert_same(mine, ref, job, True)
        # hydra.compose(..., return_hydra_config=False) composes the very same config and
        # deletes its hydra node (hydra/compose.py); deleting it here saves a composition
        with open_dict(ref):
            del ref["hydra"]
        assert_same(composer.compose(job, hydra=False), ref, job, False)


# ------------------------------------------------------------------ override forms

VALUE_CASES = [
    ["+newkey=5"],  # add a key at the top
    ["+optimizer.momentum2=0.9", "seed=4"],  # add a key in a group's node
    ["~optimizer.lr"],  # delete a value
    ["~regularizer"],  # delete a config group from the defaults list
    ["++optimizer.lr=0.7"],  # force-add over an existing key
    ["++brand.new=1"],  # force-add a new key
    ["hydra.job.name=foo", "seed=2"],  # a hydra.* value
    ["hydra.job.config.override_dirname.exclude_keys=[seed]", "seed=1", "optimizer.lr=0.2"],
    ["optimizer.lr=0.7", "optimizer=adam"],  # a group after a value of that group
    ["activation.grad_at_zero=0", "activation=relu", "train.epochs=3"],
    ["optimizer={lr:0.5,batch_size:8}"],  # a dict value for a group key: a value override
    ["+dataset@extra=moons"],  # a group under another package
    ["optimizer.lr=${seed}"],  # an interpolation, kept as such
    ["model.hidden_sizes=[]", "sweep=capacity", "seed=3"],  # a claim sweep after a value
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "seed=1"],  # hydra group + value
]


@pytest.mark.parametrize("job", VALUE_CASES, ids=[" ".join(c) for c in VALUE_CASES])
def test_override_forms_compose_as_hydra_composes_them(hydra_session, job):
    composer = Composer()
    for h in (True, False):
        assert_same_as_hydra(composer, job, h)


def test_a_jobs_value_overrides_do_not_leak_into_the_next_job(hydra_session):
    """One Composer for every value-override form, then the plain config: the cached composition
    is the same as Hydra's after all of them (each job gets its own copy)."""
    composer = Composer()
    value_only = [job for job in VALUE_CASES if not group_key(job)]
    assert len(value_only) >= 8
    for job in value_only:
        composer.compose(job, hydra=True)
        composer.compose(job, hydra=False)
    assert composer.compositions == 2  # the config without group overrides, with/without hydra
    for h in (True, False):
        assert_same_as_hydra(composer, [], h)


BAD_CASES = [
    ["nosuchkey=1"],  # Could not override
    ["+train.epochs=3"],  # Could not append: already there
    ["~nosuch"],  # Could not delete: not there
    ["~train.epochs=7"],  # Could not delete: another value
    ["optimizer.lr=[1,"],  # the grammar
    ["activation=swish"],  # no such option
    ["++optimizer=adam"],  # force-add of a group
    ["dataset@x.y=xor"],  # a package that is not in the defaults list
    ["seed=0,1"],  # a sweep without --multirun
    ["seed=1", "optimizer.nosuch=2"],  # a bad value after a good one
    ["hydra.nosuch=1"],  # a bad hydra.* value
    ["hydra.job.chdir=notabool"],  # a hydra.* value of the wrong type
]


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - compared below
        return exc
    return None


@pytest.mark.parametrize("job", BAD_CASES, ids=[" ".join(c) for c in BAD_CASES])
@pytest.mark.parametrize("h", [True, False], ids=["hydra", "job"])
def test_a_bad_override_raises_what_hydra_raises(hydra_session, job, h):
    ref = _raised(lambda: compose("config", overrides=list(job), return_hydra_config=h))
    assert ref is not None, f"hydra.compose accepted {job}: not a bad override any more"
    mine = _raised(lambda: Composer().compose(job, hydra=h))
    assert mine is not None, (f"Composer().compose({job}, hydra={h}) raised nothing; "
                              f"hydra.compose raised {type(ref).__name__}: {ref}")
    assert (type(mine), str(mine)) == (type(ref), str(ref))
    # preflight reads the cause of "Error merging override ..." for its one line
    assert (type(mine.__cause__), str(mine.__cause__)) == (type(ref.__cause__),
                                                           str(ref.__cause__))


# ------------------------------------------------------------------ the cache

def test_n_jobs_with_k_group_choices_cost_k_compositions(hydra_session):
    composer = Composer()
    jobs = [[f"activation={a}", f"optimizer.lr={lr}", f"seed={s}"]
            for a in ("relu", "tanh", "sigmoid") for lr in (0.1, 0.5) for s in range(4)]
    cfgs = [composer.compose(job, hydra=False) for job in jobs]
    assert (composer.compositions, composer.hits) == (3, len(jobs) - 3)
    for job, cfg in zip(jobs, cfgs, strict=True):  # each job got its own values
        assert cfg.activation.name == job[0].split("=")[1]
        assert cfg.optimizer.lr == float(job[1].split("=")[1])
        assert cfg.seed == int(job[2].split("=")[1])
    # the same groups with the hydra section: a composition of their own, once per choice
    for job in jobs[:8]:
        composer.compose(job, hydra=True)
    assert composer.compositions == 3 + 1  # jobs[:8] all have activation=relu
    # the key is the group overrides, wherever they stand among the value overrides
    composer.compose(["seed=1", "activation=tanh", "train.epochs=3"], hydra=False)
    composer.compose(["train.epochs=5", "activation=tanh", "seed=2"], hydra=False)
    assert composer.compositions == 4
    composer.compose(["activation=tanh", "optimizer=adam", "seed=2"], hydra=False)
    assert composer.compositions == 5
