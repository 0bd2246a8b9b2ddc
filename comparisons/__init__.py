"""Gradient-free methods and backprop on the same problems, under one budget."""

from comparisons.optimize import OptimizeResult, minimize
from comparisons.trainers import TRAINERS, get_trainer

__all__ = ["OptimizeResult", "TRAINERS", "get_trainer", "minimize"]
