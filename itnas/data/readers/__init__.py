"""The readers of the built-in data sets: one module per data set, each registering its reader with
`itnas.data.registry.register_dataset` when imported (this package imports them all, in the order `list_datasets`
names them). A new data set is one new module here, imported below.

| data set | module | where (under `root`) |
| --- | --- | --- |
| `fashion_mnist` | `fashion_mnist` | `FashionMNIST/raw/*-ubyte`, else the Debian package, else a download |
| `digits` | `digits` | scikit-learn's bundled 8x8 digits (no files) |
| `cifar10`, `cifar100` | `cifar` | the python batches / pickles (no MD5 check), CIFAR-10 also ImageFolder trees |
| `svhn` | `svhn` | `svhn/{train,test}_32x32.mat` or directly under `root` |
| `imagenet` | `imagenet` | ImageFolder trees `imagenet/{train,val}/<wnid>/`, streamed (`image_folder`) |
| `imagefolder` | `user_folder` | your own trees `train/<class>/`, `test/<class>/` (or `val/`) in `root`, streamed |

A data set not found, or a file unreadable or of the wrong shape, raises one `DataError` naming the paths looked for
and the ways to provide the data (`common.not_found`).
"""

from . import fashion_mnist, digits, cifar, svhn, imagenet, user_folder  # noqa: F401, I001  (registration order)
from .image_folder import read_image_folder

__all__ = ["read_image_folder"]
