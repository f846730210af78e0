"""``python -m aggregation``: solve classic games with every solver."""

from .demo import run

if __name__ == "__main__":
    run()
