r"""The Deep Learning Specialization's API, in jax.numpy, on top of manualgrad's core.

Each function here has the course's name, signature, return values, cache layout and
dict keys, so a notebook can swap it in for its NumPy version; the arithmetic is
manualgrad's core, not a second copy. One module per assignment:

| assignment                                                  | module             |
|-------------------------------------------------------------|--------------------|
| C1W4 "Building your deep neural network: step by step", C2W1 | `course/_deep.py` |
| C4W1 "Convolution model – Step by Step"                      | `course/_conv.py` |
| C5W1 "Building a Recurrent Neural Network – Step by Step"    | `course/_rnn.py`  |
"""

from manualgrad.course._conv import (
    conv_backward,
    conv_forward,
    conv_single_step,
    create_mask_from_window,
    distribute_value,
    pool_backward,
    pool_forward,
    zero_pad,
)
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
    "conv_backward",
    "conv_forward",
    "conv_single_step",
    "create_mask_from_window",
    "distribute_value",
    "initialize_parameters_deep",
    "linear_activation_backward",
    "linear_activation_forward",
    "linear_backward",
    "linear_forward",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "pool_backward",
    "pool_forward",
    "relu",
    "relu_backward",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
    "sigmoid",
    "sigmoid_backward",
    "update_parameters",
    "zero_pad",
]
