import random

import pytest
import torch

from mulinterp.arithmetic import from_digits, ground_truth, to_digits


def reference(a: int, b: int, n_a: int, n_b: int):
    """Schoolbook multiplication with Python ints, one position at a time."""
    ad = [(a // 10**i) % 10 for i in range(n_a)]
    bd = [(b // 10**j) % 10 for j in range(n_b)]
    s = [sum(ad[i] * bd[k - i] for i in range(n_a) if 0 <= k - i < n_b) for k in range(n_a + n_b)]
    carry, c_hat, carries, digits = 0, [], [], []
    for k in range(n_a + n_b):
        ch = s[k] + carry
        c_hat.append(ch)
        carry = ch // 10
        carries.append(carry)
        digits.append(ch % 10)
    return s, c_hat, carries, digits


@pytest.mark.parametrize("n_a,n_b", [(1, 1), (2, 2), (3, 5), (4, 4), (8, 8)])
def test_ground_truth_matches_python_integers(n_a, n_b):
    rng = random.Random(n_a * 10 + n_b)
    lo_a, hi_a, lo_b, hi_b = 10 ** (n_a - 1), 10**n_a - 1, 10 ** (n_b - 1), 10**n_b - 1
    pairs = [(lo_a, lo_b), (hi_a, hi_b), (hi_a, lo_b), (lo_a, hi_b)]  # smallest, largest / all nines
    pairs += [(rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)) for _ in range(300)]
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    gt = ground_truth(a, b, n_a, n_b)
    for row, (x, y) in enumerate(pairs):
        s, c_hat, carries, digits = reference(x, y, n_a, n_b)
        assert gt.s[row].tolist() == s
        assert gt.c_hat[row].tolist() == c_hat
        assert gt.carry[row].tolist() == carries
        assert gt.c[row].tolist() == digits
        assert int(from_digits(gt.c[row : row + 1])) == x * y == int(gt.product[row])
        assert gt.partial_products[row, n_a - 1, n_b - 1] == (x // 10 ** (n_a - 1)) * (y // 10 ** (n_b - 1))


def test_digits_round_trip():
    x = torch.tensor([0, 7, 1234, 99999999])
    assert from_digits(to_digits(x, 8)).tolist() == x.tolist()
    assert to_digits(torch.tensor([1234]), 4).tolist() == [[4, 3, 2, 1]]


def test_shape_annotations_are_checked_while_the_tests_run():
    # pyproject's addopts install jaxtyping's import hook for mulinterp: a wrong shape is an error
    from jaxtyping import TypeCheckError

    with pytest.raises(TypeCheckError):
        to_digits(torch.tensor([[12, 34]]), 2)  # annotated Int[Tensor, " batch"]: 1-D only
    with pytest.raises(TypeCheckError):
        from_digits(torch.tensor([1, 2]))  # annotated Int[Tensor, "batch n"]
