import pytest
import torch
from conftest import DENG_FILE

from mulinterp.task import ANS, EOS, MUL, SEP, MulTask, parse_deng_line, read_deng_file, write_deng_file


def test_paper_example_layouts():
    task = MulTask(4, 4)
    assert task.decode(task.encode_ints([3719], [3349])[0]) == "9 1 7 3 * 9 4 3 3 || #### 1 3 9 4 5 4 2 1 <eos>"
    assert task.deng_line(3719, 3349) == (
        "9 1 7 3 * 9 4 3 3||1 7 4 3 3 + 0 6 7 8 4 1 ( 1 3 2 2 8 1 ) + 0 0 7 5 1 1 1 "
        "( 1 3 9 7 9 2 1 ) + 0 0 0 7 5 1 1 1 #### 1 3 9 4 5 4 2 1"
    )
    assert task.cot_len == 46 and task.seq_len("plain") == 20 and task.seq_len("cot") == 66


@pytest.mark.skipif(not DENG_FILE.is_file(), reason="../shared/data not beside the checkout")
def test_deng_file_round_trip_byte_for_byte(tmp_path):
    task, problems = read_deng_file(DENG_FILE)
    assert task == MulTask(4, 4) and len(problems) == 1000
    for p in problems:
        assert task.deng_line(p.a, p.b) == p.line
    out = tmp_path / "copy.txt"
    write_deng_file(out, task, [p.a for p in problems], [p.b for p in problems])
    assert out.read_bytes() == DENG_FILE.read_bytes().rstrip(b"\n") + b"\n"


@pytest.mark.parametrize("n_a,n_b", [(1, 1), (2, 3), (4, 4), (5, 2), (8, 8)])
def test_encoding_layout_and_answer(n_a, n_b):
    task = MulTask(n_a, n_b)
    a, b = task.sample(50, "any", seed=1)
    for fmt in ("plain", "cot"):
        tok = task.encode(a, b, fmt)
        assert tok.shape == (50, task.seq_len(fmt))
        assert (tok[:, n_a] == MUL).all() and (tok[:, n_a + n_b + 1] == SEP).all()
        assert (tok[:, task.answer_start(fmt)] == ANS).all() and (tok[:, -1] == EOS).all()
        assert torch.equal(torch.stack(task.operands(tok)), torch.stack([a, b]))
        ans = tok[:, task.answer_start(fmt) + 1 : -1]
        assert ans.tolist() == [[int(d) for d in reversed(str(int(x) * int(y)).zfill(task.n_c))] for x, y in zip(a, b)]
    # the CoT text of the generalised format parses back and matches its own regeneration
    line = task.deng_line(int(a[0]), int(b[0]))
    assert parse_deng_line(line, task=task).line == line


def test_sampling_is_seeded_in_range_and_splits_disjoint():
    task = MulTask(4, 4)
    a1, b1 = task.sample(5000, "train", seed=3)
    a2, b2 = task.sample(5000, "train", seed=3)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert a1.min() >= 1000 and a1.max() <= 9999 and b1.min() >= 1000
    test_a, test_b = task.sample(5000, "test", seed=3)
    val_a, val_b = task.sample(5000, "val", seed=3)
    keys = lambda x, y: set((x * 10**4 + y).tolist())  # noqa: E731
    assert not keys(a1, b1) & keys(test_a, test_b)
    assert not keys(val_a, val_b) & keys(test_a, test_b)
    assert task.in_split(test_a, test_b, "test").all() and not task.in_split(test_a, test_b, "train").any()


@pytest.mark.parametrize(
    "line,msg",
    [
        ("1 2 3 4 * 5 6 7 8 #### 1", "expected 'INPUT||COT"),
        ("1 2 3 * 5 6 7 8||1 #### 1 2", "expected 4×4 digits"),
        ("1 2 3 0 * 5 6 7 8||1 #### 1 2", "must have exactly 4 digits"),
        ("1 x 3 4 * 5 6 7 8||1 #### 1 2", "single digits"),
    ],
)
def test_malformed_deng_lines_name_the_line(line, msg, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("9 1 7 3 * 9 4 3 3||1 #### 1\n" + line + "\n")
    with pytest.raises(ValueError, match=f"line 2: .*{msg}"):
        read_deng_file(f)


def test_bad_task_specs():
    for bad in (0, 9):
        with pytest.raises(ValueError, match="from 1 to 8"):
            MulTask(bad, 2)
    with pytest.raises(ValueError, match="look like '4x4'"):
        MulTask.parse("four by four")
    with pytest.raises(ValueError, match="unknown format"):
        MulTask(2, 2).encode(torch.tensor([12]), torch.tensor([34]), "latex")
    with pytest.raises(ValueError, match="exactly 4 digits"):
        MulTask(4, 4).encode_ints([123], [4567])


def test_enumerated_splits_partition_the_task_and_match_sampling():
    task = MulTask(2, 2)
    parts = {s: task.enumerate_split(s) for s in ("train", "val", "test")}
    assert sum(len(a) for a, _ in parts.values()) == task.n_problems == 8100
    keys = [set((a * 100 + b).tolist()) for a, b in parts.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    a, b = task.sample(50, "test", seed=3)
    assert set((a * 100 + b).tolist()) <= keys[2]
    with pytest.raises(ValueError, match="too many to enumerate"):
        MulTask(4, 4).enumerate_split("test")


@pytest.mark.parametrize("vocab", ["mulinterp", "gpt2"])
def test_positions_teacher_forcing_and_true_answer_come_from_the_task(vocab):
    task = MulTask(3, 2, vocab=vocab)
    a, b = torch.tensor([372, 105]), torch.tensor([49, 10])
    tokens = task.encode(a, b)
    assert [task.token_labels()[p] for p in task.operand_positions] == ["a0", "a1", "a2", "b0", "b1"]
    assert tokens[:, task.b_position(1)].tolist() == [4, 1]  # b_1 of 49 and of 10
    assert task.answer_position(0) == task.answer_start() and task.answer_position(4) == task.answer_start() + 4
    # the true answer digits are what the encoded sequence holds after ANS, c_0 first
    assert task.true_answer(a, b).tolist() == [[8, 2, 2, 8, 1], [0, 5, 0, 1, 0]]
    assert (tokens[:, task.answer_start() + 1 : task.answer_start() + 1 + task.n_c] == task.true_answer(a, b)).all()
    assert (task.ground_truth(a, b).c == task.true_answer(a, b)).all()
    forced = task.teacher_forced(a, b)
    assert forced.shape == (2, task.answer_start() + task.n_c) and (forced == tokens[:, : forced.shape[1]]).all()
    # another problem's answer prefix: only the answer tokens change
    mixed = task.teacher_forced(a, b, answer_of=(a.flip(0), b.flip(0)))
    start = task.answer_start()
    assert (mixed[:, : start + 1] == forced[:, : start + 1]).all()
    assert (mixed[:, start + 1 :] == forced.flip(0)[:, start + 1 :]).all()
    assert task.operands(tokens)[1].tolist() == [49, 10]


def test_check_operands_takes_ints_and_tensors():
    task = MulTask(2, 2)
    task.check_operands(10, 99)
    task.check_operands(torch.tensor([10, 99]), torch.tensor([55, 12]))
    with pytest.raises(ValueError, match="operand b=100 must have exactly 2 digits"):
        task.check_operands(10, 100)
    with pytest.raises(ValueError, match="digit-count mismatch: every a must have exactly 2 digits"):
        task.check_operands(torch.tensor([10, 9]), torch.tensor([55, 12]))
    with pytest.raises(ValueError, match="1-D tensors of the same length"):
        task.check_operands(torch.tensor([10, 11]), torch.tensor([55]))
