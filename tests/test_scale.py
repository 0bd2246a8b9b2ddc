"""The scale guard: memory estimates against the arrays trainers really hold, and its rules."""
import numpy as np
import pytest

from comparisons import scale
from comparisons.trainers import TRAINERS


def held_bytes(trainer):
    """Bytes of every array a trainer holds in its second generation, plus its population."""
    first = trainer.ask()
    trainer.tell(np.arange(len(first), dtype=float))
    population = trainer.ask()
    # each block of memory once: a trainer may hold views of its own work arrays
    blocks = {id(value if value.base is None else value.base): value if value.base is None else value.base
              for value in vars(trainer).values() if isinstance(value, np.ndarray)}
    return sum(block.nbytes for block in blocks.values()) + population.nbytes


@pytest.mark.parametrize("method", sorted(TRAINERS))
def test_memory_estimate_bounds_the_arrays_a_trainer_holds(method):
    dim = 400
    trainer = TRAINERS[method](np.zeros(dim), seed=0)
    held = held_bytes(trainer)
    estimated = scale.estimate(method, dim, trainer.popsize).memory_bytes
    # the estimate covers what is held, with room for temporaries, and is not wildly above it
    assert held <= estimated <= 3 * held + 2 ** 16


def test_full_cmaes_costs_grow_quadratically_and_sep_linearly():
    small, large = (scale.estimate("cmaes", d, popsize=20) for d in (2000, 4000))
    # 3 D^2 matrices and (256 pending + 3 P) rows of D: 3.90 from 2,000 to 4,000
    assert 3.85 < large.memory_bytes / small.memory_bytes < 4.0
    assert large.trainer_seconds / small.trainer_seconds > 3.5
    small, large = (scale.estimate("sep-cmaes", d, popsize=20) for d in (2000, 4000))
    assert 1.9 < large.memory_bytes / small.memory_bytes < 2.1


def test_guard_leaves_a_small_problem_alone():
    assert scale.guard("cmaes", 50, evaluation_flops=1e6) == ("cmaes", "")


def test_guard_switches_full_cmaes_over_the_memory_limit():
    dim = 20000   # C and B alone: 6.4 GB
    method, note = scale.guard("cmaes", dim, memory_limit=2 ** 30)
    assert method == "sep-cmaes"
    assert note.startswith("switched to sep-cmaes: cmaes at D=20,000")
    assert "over the memory limit of 1 GiB" in note


def test_guard_switches_when_the_trainer_would_dwarf_the_evaluation():
    dim = 3000
    own = scale.estimate("cmaes", dim, rates=scale.REFERENCE_RATES).trainer_seconds
    gemm_rate = scale.REFERENCE_RATES[0]
    cheap_evaluation = own * gemm_rate / 100    # the trainer: 100x the evaluation
    method, note = scale.guard("cmaes", dim, evaluation_flops=cheap_evaluation,
                               max_overhead=20)
    assert method == "sep-cmaes" and "(limit 20)" in note
    assert scale.guard("cmaes", dim, evaluation_flops=cheap_evaluation,
                       max_overhead=1000) == ("cmaes", "")


def test_guard_decides_the_same_however_slow_this_machine_is_measured(monkeypatch):
    dim, flops = 2410, 4736 * 1347 * 27          # the digits problem's full CMA-ES
    assert scale.guard("cmaes", dim, evaluation_flops=flops) == ("cmaes", "")
    scale.machine_rates.cache_clear()
    monkeypatch.setattr(scale, "machine_rates", lambda: (1e11, 6e-8, 1e9))  # a loaded machine
    assert scale.estimate("cmaes", dim, evaluation_flops=flops).overhead > 100
    assert scale.guard("cmaes", dim, evaluation_flops=flops) == ("cmaes", "")


def test_guard_refuses_with_the_numbers_when_nothing_fits():
    with pytest.raises(ValueError, match=r"refused: ga at D=10,000,000, P=50: .* over the "
                                         r"memory limit of 1 GiB"):
        scale.guard("ga", 10_000_000, popsize=50, memory_limit=2 ** 30)
    with pytest.raises(ValueError, match="or sep-cmaes"):
        scale.guard("cmaes", 20000, memory_limit=2 ** 30, switch=False)
