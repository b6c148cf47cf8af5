"""The library's user errors: one base class, so that a command line catches them by type.

Every error a user can cause and fix (a bad parameter, a missing or unreadable data set, a malformed genotype file, an
unreadable checkpoint, a diverged run, a stage output that was not produced) derives from `ItnasError`; the message
says what is wrong, where, and what to do. Anything else that escapes is a bug and keeps its traceback.

    ItnasError
      ConfigError (itnas.config)            params: names the key, the value and what is allowed
      DataError (itnas.data)                a data set or prepared folder that cannot be found, read or trusted
      GenotypeError (itnas.genotype)        a genotype that does not fit its space, a malformed genotype file
      CheckpointError (itnas.checkpoint)    an unreadable checkpoint or stage output
      NonFiniteError (itnas.engine)         a run diverged (NaN / inf)
      NB201TableError (itnas.nb201)         an unreadable NAS-Bench-201 table
      MissingOutputError (here)             a stage output (or another file a stage needs) does not exist
      StageOutputError (here)               a stage output that exists but cannot be used: not valid JSON, not of its
                                            model, or of another evaluator than its benchmark's
      UnknownNameError (here)               a name that is not in its registry (method, space, op, recipe, ...)

Each keeps the built-in base it had (ValueError, RuntimeError, FileNotFoundError, KeyError), so code that catches
those still does.
"""

from __future__ import annotations

__all__ = ["ItnasError", "MissingOutputError", "StageOutputError", "UnknownNameError"]


class ItnasError(Exception):
    """A user error: the message alone tells the user what is wrong and how to fix it (no traceback needed)."""


class MissingOutputError(ItnasError, FileNotFoundError):
    """A file a stage reads does not exist (a stage output not produced yet, a checkpoint, a table); the message
    names the file and the command that writes or restores it."""


class StageOutputError(ItnasError, ValueError):
    """A stage output (a run file) exists but cannot be used: not valid JSON, not of its typed model, or written for
    another evaluator than the benchmark's; the message names the file, what is wrong and the stage to rerun (or
    `dvc checkout` to restore it)."""


class UnknownNameError(ItnasError, KeyError):
    """A name that is not in its registry; the message names it and lists the valid names. A KeyError (registry
    look-ups are mappings) whose text prints unquoted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
