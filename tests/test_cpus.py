"""The one CPU-splitting rule (`harness.cpus.plan_cpus`): its outputs on 1, 2, 4 and 16 cores, for a run
whose replicas stay up, one whose replicas restart (chaos), and one with more replicas than service cores."""

from __future__ import annotations

import os

import pytest

from harness.cpus import CpuPlan, plan_cpus, usable_cpus


@pytest.mark.parametrize(("cores", "service", "clients"), [
    (1, None, None),  # nothing to split
    (2, (0,), (1,)),
    (4, (0, 1, 2), (3,)),
    (16, tuple(range(15)), (15,)),
])
def test_the_clients_get_the_last_core_and_the_service_the_rest(cores, service, clients):
    assert plan_cpus(range(cores)) == CpuPlan(service=service, generator=clients)


@pytest.mark.parametrize(("cores", "service", "clients"), [
    (1, None, None),
    (2, None, None),  # a restarting replica would starve the one still serving on their one core
    (3, None, None),
    (4, (0, 1, 2), (3,)),
    (16, tuple(range(15)), (15,)),
])
def test_a_run_whose_replicas_restart_pins_only_from_four_cores(cores, service, clients):
    assert plan_cpus(range(cores), restarts=True) == CpuPlan(service=service, generator=clients)


@pytest.mark.parametrize(("cores", "replicas", "service", "clients", "shared"), [
    (1, 2, None, None, True),
    (2, 1, (0,), (1,), False),
    (2, 2, (0, 1), (0, 1), True),  # more replicas than service cores: every core, and the clients too
    (4, 3, (0, 1, 2), (3,), False),
    (4, 4, (0, 1, 2, 3), (0, 1, 2, 3), True),
    (16, 8, tuple(range(15)), (15,), False),
])
def test_more_replicas_than_service_cores_spread_over_every_core(cores, replicas, service, clients, shared):
    plan = plan_cpus(range(cores), replicas=replicas)
    assert plan == CpuPlan(service=service, generator=clients)
    assert plan.shared is shared


def test_the_ids_are_the_machines_own_sorted_and_recorded_as_lists():
    plan = plan_cpus([7, 3, 5, 3])
    assert plan == CpuPlan(service=(3, 5), generator=(7,))
    assert plan.to_dict() == {"service": [3, 5], "generator": [7]}
    assert CpuPlan(None, None).to_dict() == {"service": None, "generator": None}


def test_by_default_the_plan_splits_the_cpus_this_process_may_use():
    usable = usable_cpus()
    assert usable == sorted(os.sched_getaffinity(0))
    assert plan_cpus() == plan_cpus(usable)
