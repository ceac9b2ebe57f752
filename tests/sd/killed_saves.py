"""A Python program whose first safetensors write is killed with SIGKILL, after leaving what a kill inside
safetensors 0.8's ``save_file`` leaves: the file it was asked for and its own ``.tmpXXXXXX`` temp beside it."""

from __future__ import annotations

import textwrap


def killed_at_the_first_save(then: str, leftover: bytes = b"half of a file") -> str:
    """Source for ``python -c``: the kill set up, then ``then`` (the code that saves)."""
    return textwrap.dedent(f"""
        import os, signal, sys
        import safetensors.torch as st
        real = st.save_file
        def killed(tensors, filename, metadata=None):
            real(tensors, filename, metadata=metadata)
            with open(os.path.join(os.path.dirname(os.fspath(filename)), ".tmpK1lL9z"), "wb") as handle:
                handle.write({leftover!r})
            os.kill(os.getpid(), signal.SIGKILL)
        st.save_file = killed
    """) + textwrap.dedent(then)
