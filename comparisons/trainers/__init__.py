"""Gradient-free trainers behind one ask/tell interface, by name.

``Memetic`` (a GA whose children learn before selection) is not in the
registry: it needs a local search, which ``comparisons.runs`` supplies.
"""

from comparisons.trainers.anneal import Anneal
from comparisons.trainers.base import Trainer, check_choice
from comparisons.trainers.cmaes import CMAES, SepCMAES
from comparisons.trainers.de import DE
from comparisons.trainers.es import ES
from comparisons.trainers.ga import GA
from comparisons.trainers.hillclimb import HillClimb
from comparisons.trainers.hybrid import Memetic
from comparisons.trainers.pso import PSO
from comparisons.trainers.random_search import RandomSearch

TRAINERS = {cls.name: cls for cls in (GA, PSO, DE, CMAES, SepCMAES, ES, Anneal, HillClimb, RandomSearch)}


def get_trainer(name):
    """Return the trainer class registered under ``name``."""
    return TRAINERS[check_choice("name", name, TRAINERS)]


__all__ = ["TRAINERS", "Memetic", "Trainer", "get_trainer"]
