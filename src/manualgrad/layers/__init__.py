"""The layer kinds a network is made of, and the protocol a layer of your own implements.

| name        | what it is                                                              |
|-------------|-------------------------------------------------------------------------|
| `Dense`     | Z = W A_prev + b, A = g(Z): the seed's formulas (1)–(5); on a sequence   |
|             | (n, T, m), the same W and b at every time step                           |
| `Conv2D`    | a dense layer on every patch of an image (H, W, C, m): (2) over positions |
| `MaxPool2D` | the max of each window, per channel; backward: the max-pool mask        |
| `AvgPool2D` | the mean of each window, per channel; backward: the average spread      |
| `Flatten`   | images (H, W, C, m) to vectors (H·W·C, m), before a `Dense` layer       |
| `RNN`       | a_t = g(Waa a_{t-1} + Wax x_t + ba) through time, sequences (n_x, T, m) |
| `LSTM`      | the course's LSTM cell (gates f, i, c̃, o on [a_{t-1}; x_t]) through time |
| `Embedding` | integer token ids (T, m) to vectors (d, T, m): a lookup in E (d, V)     |
| `LayerNorm` | each position's features normalised, then γ ⊙ x̂ + β                    |
| `Layer`     | the base class of every layer: `init`, `forward`, `backward`, `jvp`     |
| `Product`   | what a layer's backward hands the extensions: (A, dZ) with a position axis |
| `Lookup`, `ScaleShift` | the product kinds of an embedding and of a layer norm        |

See :mod:`manualgrad._core.layer` for the protocol, the docs page "Write your own
layer" for a complete example, "Convolutions" for the conv and pool formulas, and
"Sequences" for backpropagation through time and "Embeddings and LayerNorm" for those two.
"""

from manualgrad._core.layer import Layer, Lookup, Product, ScaleShift
from manualgrad.layers._conv import Conv2D, ConvCache
from manualgrad.layers._dense import Dense, DenseCache
from manualgrad.layers._embedding import Embedding
from manualgrad.layers._layernorm import LayerNorm, LayerNormCache
from manualgrad.layers._lstm import LSTM, LSTMCache
from manualgrad.layers._pool import AvgPool2D, Flatten, MaxPool2D, PoolCache
from manualgrad.layers._rnn import RNN, RNNCache

__all__ = [
    "LSTM",
    "RNN",
    "AvgPool2D",
    "Conv2D",
    "ConvCache",
    "Dense",
    "DenseCache",
    "Embedding",
    "Flatten",
    "LSTMCache",
    "Layer",
    "LayerNorm",
    "LayerNormCache",
    "Lookup",
    "MaxPool2D",
    "PoolCache",
    "Product",
    "RNNCache",
    "ScaleShift",
]
