"""The layer kinds a network is made of, and the protocol a layer of your own implements.

| name      | what it is                                                              |
|-----------|-------------------------------------------------------------------------|
| `Dense`   | Z = W A_prev + b, A = g(Z): the seed's formulas (1)–(5)                  |
| `Layer`   | the base class of every layer: `init`, `forward`, `backward`, `jvp`     |
| `Product` | what a layer's backward hands the extensions: (A, dZ) with a position axis |

See :mod:`manualgrad._core.layer` for the protocol and the docs page "Write your own
layer" for a complete example.
"""

from manualgrad._core.layer import Layer, Product
from manualgrad.layers._dense import Dense, DenseCache

__all__ = ["Dense", "DenseCache", "Layer", "Product"]
