r"""The Deep Learning Specialization's API, in jax.numpy, on top of manualgrad's core.

Each function here has the course's name, signature, return values, cache layout and
dict keys, so a notebook can swap it in for its NumPy version; the arithmetic is
manualgrad's core, not a second copy. One module per assignment:

| assignment                                                  | module             |
|-------------------------------------------------------------|--------------------|
| C1W4 "Building your deep neural network: step by step", C2W1 | `course/_deep.py` |
| C5W1 "Building a Recurrent Neural Network – Step by Step"    | `course/_rnn.py`  |
"""

from manualgrad.course._deep import (
    L_model_backward,
    L_model_forward,
    compute_cost,
    compute_cost_with_regularization,
    initialize_parameters_deep,
    linear_activation_backward,
    linear_activation_forward,
    linear_backward,
    linear_forward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    update_parameters,
)
from manualgrad.course._rnn import (
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
    rnn_backward,
    rnn_cell_backward,
    rnn_cell_forward,
    rnn_forward,
)

__all__ = [
    "L_model_backward",
    "L_model_forward",
    "compute_cost",
    "compute_cost_with_regularization",
    "initialize_parameters_deep",
    "linear_activation_backward",
    "linear_activation_forward",
    "linear_backward",
    "linear_forward",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "relu",
    "relu_backward",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
    "sigmoid",
    "sigmoid_backward",
    "update_parameters",
]
