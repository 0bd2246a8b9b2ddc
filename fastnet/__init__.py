"""fastnet: multi-layer perceptrons trained by backpropagation, compiled by Numba.

>>> import numpy as np, fastnet
>>> X_train, y_train, X_test, y_test = fastnet.datasets.load("digits")
>>> net = fastnet.Network([64, 64, 10], activation="relu", output="softmax")
>>> history = net.fit(X_train, y_train, optimizer=fastnet.Adam(lr=1e-3), epochs=30)
>>> net.score(X_test, y_test)  # doctest: +SKIP
"""
from fastnet import callbacks, datasets
from fastnet.gradcheck import gradcheck
from fastnet.io import load, save
from fastnet.network import Network
from fastnet.optim import (SGD, Adam, AdamW, CosineAnnealing, ExponentialDecay, Optimizer,
                           RMSprop, StepDecay, get_optimizer)
from fastnet.train import History, StepTrainer

__version__ = "0.1.0"

__all__ = ["Network", "callbacks", "datasets", "gradcheck", "load", "save", "SGD", "Adam", "AdamW",
           "RMSprop", "Optimizer", "StepDecay", "ExponentialDecay", "CosineAnnealing",
           "get_optimizer", "History", "StepTrainer", "__version__"]
