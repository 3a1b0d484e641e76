"""The GPT of examples/gpt/gpt.lb written in JAX, for reference losses.

    JAX_PLATFORMS=cpu python benches/peers/gpt_jax.py

Same model, same initialisation from the same key (loopvm's random numbers
are JAX's threefry2x32, bit for bit), same batches, same Adam: the losses
of the first steps must agree with loopvm's on every tier. It runs the
small configuration of tests/gpt_example.rs and prints the losses that the
test keeps as data (LOSSES_JAX there).
"""
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", False)

# The test's configuration (tests/gpt_example.rs, CONFIG).
V, T, D, H, E, F, L, B, S = 16, 8, 16, 2, 8, 32, 2, 4, 10
LR = 3e-3
TEXT = "the quick brown fox jumps over the lazy dog; a loop compiled once, as a loop. "


def corpus():
    return jnp.array([ord(c) % V for c in TEXT * 4], jnp.int32)


def layer_norm(x, g, b):
    mu = jnp.mean(x, axis=2, keepdims=True)
    var = jnp.mean((x - mu) ** 2.0, axis=2, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * g + b


def attention(x, wq, wk, wv, wo):
    q = jnp.einsum("btd,hde->bhte", x, wq)
    k = jnp.einsum("btd,hde->bhte", x, wk)
    v = jnp.einsum("btd,hde->bhte", x, wv)
    scale = jax.lax.rsqrt(jnp.float32(q.shape[3]))
    s = jnp.einsum("bhqe,bhke->bhqk", q, k) * scale
    pos = jnp.arange(x.shape[1], dtype=jnp.int32)
    causal = pos.reshape(-1, 1) >= pos
    p = jax.nn.softmax(jnp.where(causal, s, -jnp.inf))
    o = jnp.einsum("bhqk,bhke->bhqe", p, v)
    return jnp.einsum("bhqe,hed->bqd", o, wo)


def block(x, w):
    ln1_g, ln1_b, wq, wk, wv, wo, ln2_g, ln2_b, w1, b1, w2, b2 = w
    x = x + attention(layer_norm(x, ln1_g, ln1_b), wq, wk, wv, wo)
    h = jax.nn.gelu(layer_norm(x, ln2_g, ln2_b) @ w1 + b1, approximate=True)
    return x + h @ w2 + b2


def forward(params, tokens):
    wte, wpe, layers, lnf_g, lnf_b = params
    x = jnp.take(wte, tokens, axis=0) + wpe
    x, _ = jax.lax.scan(jax.checkpoint(lambda x, w: (block(x, w), None)), x, layers)
    return layer_norm(x, lnf_g, lnf_b) @ wte.T


def loss(params, tokens, targets):
    logp = jax.nn.log_softmax(forward(params, tokens))
    return -jnp.mean(jnp.take_along_axis(logp, targets.reshape(B, T, 1), axis=2))


def batch(k, data):
    n = data.shape[0]
    bits = jax.random.bits(k, (B,), jnp.uint32)
    starts = (bits % jnp.uint32(n - T)).astype(jnp.int32)
    idx = starts.reshape(B, 1) + jnp.arange(T, dtype=jnp.int32)
    return jnp.take(data, idx, axis=0), jnp.take(data, idx + 1, axis=0)


def adam(params, grads, m, v, step, lr):
    b1, b2, eps = jnp.float32(0.9), jnp.float32(0.999), jnp.float32(1e-8)
    m = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, m, grads)
    v = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, v, grads)
    t = jnp.float32(step + 1)
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t
    params = jax.tree.map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), params, m, v)
    return params, m, v


def init(k):
    ks = jax.random.split(k, 8)
    depth = jax.lax.rsqrt(jnp.float32(2.0 * L))
    n = lambda i, shape: jax.random.normal(ks[i], shape, jnp.float32)
    layers = (jnp.ones((L, D)), jnp.zeros((L, D)),
              0.02 * n(2, (L, H, D, E)), 0.02 * n(3, (L, H, D, E)), 0.02 * n(4, (L, H, D, E)),
              0.02 * depth * n(5, (L, H, E, D)),
              jnp.ones((L, D)), jnp.zeros((L, D)),
              0.02 * n(6, (L, D, F)), jnp.zeros((L, F)),
              0.02 * depth * n(7, (L, F, D)), jnp.zeros((L, D)))
    return (0.02 * n(0, (V, D)), 0.02 * n(1, (T, D)), layers, jnp.ones((D,)), jnp.zeros((D,)))


@jax.jit
def step_fn(params, m, v, k, step, data):
    ks = jax.random.split(k, 2)
    x, y = batch(ks[1], data)
    l, g = jax.value_and_grad(loss)(params, x, y)
    params, m, v = adam(params, g, m, v, step, LR)
    return params, m, v, ks[0], l


def main():
    data = corpus()
    ks = jax.random.split(jax.random.PRNGKey(0), 2)
    params = init(ks[0])
    zero = jax.tree.map(jnp.zeros_like, params)
    m, v, k = zero, zero, ks[1]
    losses = []
    for step in range(S):
        params, m, v, k, l = step_fn(params, m, v, k, step, data)
        losses.append(float(l))
    print("jax", jax.__version__, "losses:", ", ".join(repr(np.float32(l).item()) for l in losses))


if __name__ == "__main__":
    main()
