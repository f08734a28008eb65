"""The formulas and the engine: what a student reads top to bottom.

| module           | holds                                                          |
|------------------|----------------------------------------------------------------|
| `activations`    | g, g′, g″ of every activation, side by side                    |
| `losses`         | L, dA[L] and what each loss needs (labels, Hessian square root) |
| `precision`      | one matmul per precision policy                                |
| `regularization` | the L2 term and inverted dropout                               |
| `dense`          | formulas (1)–(8) of a dense layer, one small function each     |
| `engine`         | the network as a sequence of layers: forward, the chain, (2)   |
| `validation`     | trace-time checks with the error catalogue's messages          |

Nothing here imports a feature module; the features import this.
"""
