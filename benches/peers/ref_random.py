"""JAX's values for loopvm's random numbers (issue 14), kept in
tests/spec/ops/random_jax.lb: the default threefry2x32 PRNG (partitionable,
JAX 0.10's default).

    JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_random.py
"""
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)


def show(name, v):
    v = np.asarray(v)
    if v.dtype.kind == "f":
        items = ", ".join(repr(float(x)) for x in v.reshape(-1))
    else:
        items = ", ".join(str(int(x)) for x in v.reshape(-1))
    print(f"# {name}: {v.dtype}{list(v.shape)} [{items}]")


print(f"# jax {jax.__version__}")
k = jax.random.PRNGKey(np.int32(42))
data = jax.random.key_data
show("key(42)", data(k))
show("key(-1)", data(jax.random.PRNGKey(np.int32(-1))))
show("key(-5000000000i64)", data(jax.random.PRNGKey(np.int64(-5000000000))))
show("split(k, 3)", data(jax.random.split(k, 3)))
show("fold_in(k, 7)", data(jax.random.fold_in(k, 7)))
show("fold_in(k, -3)", data(jax.random.fold_in(k, np.int32(-3))))
show("random_bits(k, [2, 3])", jax.random.bits(k, (2, 3), jnp.uint32))
show("uniform(k, f32, [5])", jax.random.uniform(k, (5,), jnp.float32))
show("uniform(k, f32, [2, 2], minval: -2.0, maxval: [[3.0], [5.0]])",
     jax.random.uniform(k, (2, 2), jnp.float32, minval=-2.0, maxval=jnp.array([[3.0], [5.0]], jnp.float32)))
show("uniform(k, f64, [3])", jax.random.uniform(k, (3,), jnp.float64))
show("normal(k, f32, [6])", jax.random.normal(k, (6,), jnp.float32))
show("normal(k, f64, [4])", jax.random.normal(k, (4,), jnp.float64))
show("bernoulli(k, 0.55, [6])", jax.random.bernoulli(k, np.float32(0.55), (6,)))
logits = jnp.array([[0.0, 1.0, 2.0, -1.0], [3.0, -2.0, 0.5, 0.5], [-jnp.inf, 0.0, -jnp.inf, -jnp.inf]], jnp.float32)
show("categorical(k, logits)", jax.random.categorical(k, logits))
show("categorical(k, logits, axis: 0)", jax.random.categorical(k, logits, axis=0))
# A training-loop pattern: a key carried through a loop, split every step.
def body(i, c):
    key, acc = c
    key, sub = jax.random.split(key)
    return key, acc + jax.random.normal(sub, (3,), jnp.float32)
show("fori_loop split/normal", jax.lax.fori_loop(0, 4, body, (k, jnp.zeros(3, jnp.float32)))[1])
