"""Performance: steady load within the SLA, the sweep, and no regression against a baseline.

What is measured comes from the main job's preset (`harness.job.presets`), so these scenarios and
``harness run smoke|nightly`` measure the same things into the same layout: either one's output is
a ``--harness-baseline`` for the other. ``smoke``: 30 s of steady Locust load on one replica, and a
sweep of fp32 and bf16 x max_batch_size 1 and 32 x 50 and 150 rps (a few minutes on 2 cores);
``nightly``: stepped load for 5 minutes and the full sweep with max-rate searches.

The sweep is measured once per session (the ``perf`` fixture) and judged by the tests below; the
baseline comparison is skipped without ``--harness-baseline``.
"""

import pytest

pytestmark = pytest.mark.perf


def test_steady_load_meets_the_tier(deploy_service, load):
    # given: the reference service on one replica (or --harness-spec's server in its own topology), Ready
    service = deploy_service()

    # when: the preset's load profile runs against it (Locust in its own process, the prober alongside)
    outcome = load.run(service)

    # then: the SLO (p99, errors) and the topology's tier are met, and no monitoring threshold fired (memory growth)
    outcome.expect_tier()


def test_sweep_finds_a_configuration_within_the_slo_at_every_rate(perf):
    # given: the preset's sweep plan, precision x max_batch_size x request rate
    plan = perf.sweep_plan()

    # when: every point is measured (warm-up, repeated windows, medians with confidence intervals)
    sweep = perf.sweep()

    # then: no point failed outright (a point over its time bound is recorded with the reason, not failed)
    sweep.expect_no_errors()
    # and: at each swept rate some configuration met the p99 SLO, every rate that none met listed
    assert sweep.p99_slo_ms == plan.p99_ms
    sweep.expect_slo_met_at_every_rate()


def test_sweep_is_no_slower_than_the_baseline(perf, baseline):
    # given: the sweep of this session and a saved baseline run (--harness-baseline)
    sweep = perf.sweep()

    # when: each point is compared with the baseline's (a sweep's repeats are windows of one run, not
    # independent rounds: its rows show the change and are never judged on them; rounds are, see harness compare)
    comparison = sweep.compare_with_baseline()

    # then: no metric regressed beyond run-to-run noise, every regression listed
    comparison.expect_no_regression()
