"""JAX's values for the composite builtins of issue 14 (softmax, log_softmax,
logsumexp, gelu, erfc), kept in tests/spec/ops/nn_jax.lb.

    JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_nn.py
"""
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

x = np.array([[1.0, 2.0, 3.0, -0.5], [-1.0, 0.5, -np.inf, 4.0], [1e30, -1e30, 2e30, 0.0]], np.float32)
g = np.array([-6.0, -3.5, -1.0, -0.25, 0.0, 0.3, 1.7, 4.0], np.float32)


def show(name, v):
    v = np.asarray(v)
    body = np.array2string(v.reshape(-1), separator=", ", max_line_width=10**6, floatmode="unique",
                           formatter={"float_kind": lambda f: repr(float(f)) if np.isfinite(f) else ("inf" if f > 0 else ("-inf" if f < 0 else "nan"))})
    print(f"# {name}: {v.dtype}{list(v.shape)} {body}")


print(f"# jax {jax.__version__}")
show("softmax(x)", jax.nn.softmax(x))
show("log_softmax(x, axis: 0)", jax.nn.log_softmax(x, axis=0))
show("logsumexp(x, axis: 1)", jax.nn.logsumexp(x, axis=1))
show("logsumexp(x, axis: 0, keepdims: true)", jax.nn.logsumexp(x, axis=0, keepdims=True))
show("logsumexp(x)", jax.nn.logsumexp(x))
show("gelu(g)", jax.nn.gelu(g))
show("gelu(g, approximate: false)", jax.nn.gelu(g, approximate=False))
show("erfc(g)", jax.scipy.special.erfc(g))
show("sum(x, axis: 1, keepdims: true)", jnp.sum(x, axis=1, keepdims=True))
show("max(x, keepdims: true)", jnp.max(x, keepdims=True))
show("argmax(x, axis: 1, keepdims: true)", jnp.argmax(x, axis=1, keepdims=True))
