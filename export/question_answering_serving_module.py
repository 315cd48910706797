"""The `tf.Module` of a question-answering export: tokenizer, windows, model and span choice,
all in the graph."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.in_graph_tokenizer import InGraphTokenizer  # noqa: E402

logger = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"
TOKENS = "tokens"
#: The SavedModel's signatures, `serving_default` first.
SIGNATURE_NAMES = (SERVING_DEFAULT, TOKENS)
QUESTION = "question"
CONTEXT = "context"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: `serving_default`'s outputs.
OUTPUTS = ("answer", "start", "end", "score")
# Tokens that [CLS] question [SEP] ... [SEP] adds around the context.
_SPECIAL_TOKENS = 3


class QuestionAnsweringServingModule(tf.Module):
    """A fine-tuned extractive QA model with its tokenizer and span decoding in the graph.

    Signatures:

    - `serving_default(question, context)` (string [-1] each) → `answer` string [-1],
      `start`, `end` int64 [-1] (character offsets into the context, `end` exclusive) and
      `score` float32 [-1]. No answer is `""` with start = end = 0.
    - `tokens(input_ids, attention_mask, token_type_ids)` (int32 [-1, -1]) → `start_logits`,
      `end_logits` (float32 [-1, -1]), for clients that tokenize and window themselves.

    Like Hugging Face's `run_qa` (and the training windows), each pair is tokenized as
    `[CLS] question [SEP] context [SEP]` and a context longer than one window of `max_length`
    tokens is split into windows sharing `doc_stride` tokens. In every window each span of
    context tokens (start <= end, fewer than `max_answer_length` tokens apart) scores start
    logit + end logit; the answer is the best span over the pair's windows (the first window
    on ties). With `version_2_with_negative` the pair has no answer when its lowest [CLS] score
    (start + end logit of token 0, over its windows) is higher. `score` is the span's
    probability in its window (softmax of the start logits times softmax of the end logits over
    the window's tokens; for no answer, that of [CLS]).

    A question longer than `max_length - doc_stride - 4` tokens is truncated to that (Hugging
    Face's tokenizer refuses it), so every window keeps new context tokens.

    Character offsets: the context is split into characters, each character normalised like
    the Hugging Face tokenizer (lower case, accents, control characters), and the WordPiece
    offsets of the normalised text mapped back to the characters they came from — so offsets
    and the answer refer to the context as sent, accents and all.

    Known differences from the Hugging Face tokenizer are `InGraphTokenizer`'s: special tokens
    typed in the text ("[SEP]") are split like words here, and a word over 100 bytes (Hugging
    Face: 100 characters) becomes [UNK].

    The module also saves `windows(question, context)` (not a signature): the windows' token
    ids, `example` (the pair of each window) and `offset_start`/`offset_end` (character offsets
    of context tokens, -1 elsewhere), for comparing with the Hugging Face tokenizer; plus
    `in_context` (context-token mask) and `byte_offsets` (each context character's first byte,
    then the context's length) that `serving_default` uses.

    Args:
        model: A built `TFAutoModelForQuestionAnswering`.
        tokenizer: The in-graph tokenizer of the run's tokenizer.
        doc_stride: Tokens shared by consecutive windows.
        max_answer_length: Longest answer, in tokens.
        version_2_with_negative: Allow "no answer".
    """

    def __init__(self, model: Any, tokenizer: InGraphTokenizer, *, doc_stride: int,
                 max_answer_length: int, version_2_with_negative: bool) -> None:
        super().__init__(name="question_answering_serving_module")
        max_length = tokenizer.max_length
        if not 0 < doc_stride < max_length - _SPECIAL_TOKENS - 1:
            raise ValueError(
                f"doc_stride must leave room for new context tokens in a window of max_length "
                f"{max_length}. Expected 0 < doc_stride < {max_length - _SPECIAL_TOKENS - 1}. "
                f"Received: doc_stride={doc_stride}")
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.doc_stride = int(doc_stride)
        self.max_answer_length = int(max_answer_length)
        self.version_2_with_negative = bool(version_2_with_negative)
        self.max_question_tokens = self.max_length - self.doc_stride - _SPECIAL_TOKENS - 1
        self.signature_names = SIGNATURE_NAMES
        self._model_takes_token_type_ids = "token_type_ids" in inspect.signature(
            model.call).parameters
        text_specs = [tf.TensorSpec([None], tf.string, name=QUESTION),
                      tf.TensorSpec([None], tf.string, name=CONTEXT)]
        self.serving_default = tf.function(self._serve, input_signature=text_specs)
        self.windows = tf.function(self._windows, input_signature=text_specs)
        self.tokens = tf.function(self._tokens, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name=name) for name in TOKEN_INPUTS])

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        return {name: getattr(self, name).get_concrete_function()
                for name in self.signature_names}

    # === Signature bodies ===

    def _tokens(self, input_ids, attention_mask, token_type_ids):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._model_takes_token_type_ids:
            inputs["token_type_ids"] = token_type_ids
        outputs = self._model.value(**inputs, training=False)
        return {"start_logits": tf.cast(outputs.start_logits, tf.float32),
                "end_logits": tf.cast(outputs.end_logits, tf.float32)}

    def _windows(self, question, context):
        return self._encode(question, context)

    def _serve(self, question, context):
        # Calling the `windows` and `tokens` tf.functions (rather than their bodies) traces the
        # tokenizer and the model once: the SavedModel's functions share them.
        encoded = self.windows(question, context)
        logits = self.tokens(**{name: encoded[name] for name in TOKEN_INPUTS})
        return self._decode(encoded, logits["start_logits"], logits["end_logits"], context)

    # === Tokenization and windows ===

    def _context_tokens(self, context):
        """WordPiece ids of the contexts with each token's character offsets (ragged
        [batch, (tokens)]), and each context's characters' byte offsets plus its byte length
        (ragged [batch, (characters + 1)])."""
        characters, byte_starts = tf.strings.unicode_split_with_offsets(context, "UTF-8")
        normalized = tf.ragged.map_flat_values(self.tokenizer.normalize, characters)
        lengths = tf.strings.length(normalized.flat_values)
        # Where each character's normalised text ends in its context's normalised text.
        row_starts = normalized.row_starts()
        cumulative = tf.cumsum(tf.cast(lengths, tf.int64))
        before_row = tf.gather(tf.concat([[0], cumulative], 0), row_starts)
        ends = normalized.with_flat_values(
            cumulative - tf.repeat(before_row, normalized.row_lengths()))
        tokens, token_starts, token_ends = self._wordpieces_with_offsets(
            tf.strings.reduce_join(normalized, axis=1))
        largest = tf.int64.max
        sorted_ends = ends.to_tensor(default_value=largest)
        # The character holding a token's first byte, and one past the one holding its last.
        first_char = tf.searchsorted(sorted_ends, token_starts.to_tensor(), side="right",
                                     out_type=tf.int64)
        last_char = tf.searchsorted(sorted_ends, token_ends.to_tensor() - 1, side="right",
                                    out_type=tf.int64)
        mask = tf.sequence_mask(tokens.row_lengths(), tf.shape(first_char)[1])
        char_starts = tf.ragged.boolean_mask(first_char, mask)
        char_ends = tf.ragged.boolean_mask(last_char + 1, mask)
        byte_length = tf.cast(tf.expand_dims(tf.strings.length(context), 1), tf.int64)
        byte_offsets = tf.concat([byte_starts, tf.RaggedTensor.from_tensor(byte_length)], axis=1)
        return tokens, char_starts, char_ends, byte_offsets

    def _wordpieces_with_offsets(self, text):
        """WordPiece ids with byte offsets (ragged [batch, (tokens)]), as
        `tensorflow_text.BertTokenizer.tokenize_with_offsets` but with a whole word's offsets
        for a one-piece word: TF Text gives the [UNK] of a word longer than
        `max_bytes_per_word` the offsets (0, 5) in the word, Hugging Face the whole word."""
        bert = self.tokenizer.wordpiece_tokenizer
        words, word_starts, word_ends = bert._basic_tokenizer.tokenize_with_offsets(text)
        pieces, piece_starts, piece_ends = bert._wordpiece_tokenizer.tokenize_with_offsets(words)
        pieces_per_word = pieces.values.row_lengths()
        one_piece = tf.repeat(pieces_per_word == 1, pieces_per_word)
        word_length = tf.repeat((word_ends - word_starts).flat_values, pieces_per_word)
        piece_starts = piece_starts.with_flat_values(
            tf.where(one_piece, tf.zeros_like(word_length), piece_starts.flat_values))
        piece_ends = piece_ends.with_flat_values(
            tf.where(one_piece, word_length, piece_ends.flat_values))
        starts = tf.expand_dims(word_starts, axis=2) + piece_starts
        ends = tf.expand_dims(word_starts, axis=2) + piece_ends
        return (pieces.merge_dims(1, -1), starts.merge_dims(1, -1), ends.merge_dims(1, -1))

    def _encode(self, question, context):
        questions = self.tokenizer.wordpieces(question)[:, :self.max_question_tokens]
        tokens, char_starts, char_ends, byte_offsets = self._context_tokens(context)
        question_length = questions.row_lengths()
        context_length = tokens.row_lengths()
        window_size = self.max_length - _SPECIAL_TOKENS - question_length
        step = window_size - self.doc_stride
        overflow = tf.maximum(context_length - window_size, 0)
        windows_per_pair = 1 + (overflow + step - 1) // step
        example = tf.repeat(tf.range(tf.size(question, out_type=tf.int64)), windows_per_pair)
        index = tf.ragged.range(windows_per_pair).flat_values
        first = index * tf.gather(step, example)  # first context token of each window
        count = tf.minimum(tf.gather(window_size, example),
                           tf.gather(context_length, example) - first)
        flat = tf.ragged.range(count) + tf.expand_dims(
            tf.gather(tokens.row_starts(), example) + first, 1)
        window_tokens = tf.gather(tokens.flat_values, flat)
        input_ids, token_type_ids = tf_text.combine_segments(
            [tf.gather(questions, example), window_tokens],
            start_of_sequence_id=self.tokenizer.cls_token_id,
            end_of_segment_id=self.tokenizer.sep_token_id)
        length = tf.maximum(input_ids.bounding_shape(axis=1), _SPECIAL_TOKENS)
        input_ids, attention_mask = tf_text.pad_model_inputs(
            input_ids, max_seq_length=length, pad_value=self.tokenizer.pad_token_id)
        token_type_ids, _ = tf_text.pad_model_inputs(token_type_ids, max_seq_length=length)
        # Per window position: the context token there (its index in the pair's context), or -1.
        lead = tf.gather(question_length, example) + 2
        slot = tf.range(tf.cast(length, tf.int64))[tf.newaxis, :] - tf.expand_dims(lead, 1)
        in_context = (slot >= 0) & (slot < tf.expand_dims(count, 1))
        token_index = tf.where(in_context, slot + tf.expand_dims(first, 1), 0)
        starts = tf.gather(char_starts, example).to_tensor(default_value=-1)
        ends = tf.gather(char_ends, example).to_tensor(default_value=-1)
        # An empty context has no tokens: gather from a column of -1 instead.
        starts = tf.concat([starts, tf.fill(tf.stack([tf.size(example), 1]),
                                            tf.constant(-1, tf.int64))], 1)
        ends = tf.concat([ends, tf.fill(tf.stack([tf.size(example), 1]),
                                        tf.constant(-1, tf.int64))], 1)
        offset_start = tf.where(in_context, tf.gather(starts, token_index, batch_dims=1), -1)
        offset_end = tf.where(in_context, tf.gather(ends, token_index, batch_dims=1), -1)
        return {
            "input_ids": tf.cast(input_ids, tf.int32),
            "attention_mask": tf.cast(attention_mask, tf.int32),
            "token_type_ids": tf.cast(token_type_ids, tf.int32),
            "example": example,
            "offset_start": offset_start,
            "offset_end": offset_end,
            "in_context": in_context,
            "byte_offsets": byte_offsets.to_tensor(),
        }

    # === Span choice ===

    def _decode(self, encoded, start_logits, end_logits, context):
        in_context = encoded["in_context"]
        attention = tf.cast(encoded["attention_mask"], tf.bool)
        # Span (start i, end i + k) for k < max_answer_length: a [windows, tokens, k] band
        # instead of every (start, end) pair. Flat index i * k_max + k orders spans like
        # NumPy's argmax over the full [start, end] matrix (start first, then end).
        length = tf.shape(start_logits)[1]
        span = self.max_answer_length
        padded_end = tf.pad(end_logits, [[0, 0], [0, span]], constant_values=float("-inf"))
        padded_context = tf.pad(in_context, [[0, 0], [0, span]])
        index = tf.range(length)[:, tf.newaxis] + tf.range(span)[tf.newaxis, :]  # [T, k]
        end_scores = tf.gather(padded_end, index, axis=1)  # [W, T, k]
        end_in_context = tf.gather(padded_context, index, axis=1)
        valid = in_context[:, :, tf.newaxis] & end_in_context
        scores = start_logits[:, :, tf.newaxis] + end_scores
        scores = tf.reshape(tf.where(valid, scores, float("-inf")),
                            [tf.shape(scores)[0], length * span])
        best = tf.argmax(scores, axis=1, output_type=tf.int32)
        window_score = tf.gather(scores, best, batch_dims=1)
        first_token = best // span
        last_token = tf.minimum(first_token + best % span, length - 1)
        # Probabilities in float64, rounded to float32 at the end: clients of the portable
        # export compute them in NumPy (serving.portable_question_answering_spans) and get the
        # same float32 values, which float32 exp/log implementations would not guarantee.
        start_log_probs = _masked_log_softmax(start_logits, attention)
        end_log_probs = _masked_log_softmax(end_logits, attention)
        span_probability = tf.cast(tf.exp(
            tf.gather(start_log_probs, first_token, batch_dims=1)
            + tf.gather(end_log_probs, last_token, batch_dims=1)), tf.float32)
        null_score = start_logits[:, 0] + end_logits[:, 0]
        null_probability = tf.cast(tf.exp(start_log_probs[:, 0] + end_log_probs[:, 0]),
                                   tf.float32)

        example = encoded["example"]
        pairs = tf.size(context, out_type=tf.int64)
        chosen = _first_best(window_score, example, pairs, highest=True)
        null_window = _first_best(null_score, example, pairs, highest=False)
        best_score = tf.gather(window_score, chosen)
        best_null = tf.gather(null_score, null_window)
        no_answer = tf.math.is_inf(best_score)
        if self.version_2_with_negative:
            no_answer = no_answer | (best_null > best_score)
        start = tf.gather(tf.gather(encoded["offset_start"], chosen),
                          tf.gather(first_token, chosen), batch_dims=1)
        end = tf.gather(tf.gather(encoded["offset_end"], chosen),
                        tf.gather(last_token, chosen), batch_dims=1)
        start = tf.where(no_answer, tf.constant(0, tf.int64), tf.maximum(start, 0))
        end = tf.where(no_answer, tf.constant(0, tf.int64), tf.maximum(end, 0))
        byte_offsets = encoded["byte_offsets"]
        byte_start = tf.gather(byte_offsets, start, batch_dims=1)
        byte_end = tf.gather(byte_offsets, end, batch_dims=1)
        answer = tf.strings.substr(context, tf.cast(byte_start, tf.int32),
                                   tf.cast(byte_end - byte_start, tf.int32))
        score = tf.where(no_answer, tf.gather(null_probability, null_window),
                         tf.gather(span_probability, chosen))
        return {"answer": answer, "start": start, "end": end, "score": score}


def _masked_log_softmax(logits, mask):
    """float64 log-softmax of each row over its attended tokens."""
    logits = tf.cast(logits, tf.float64)
    masked = tf.where(mask, logits, tf.constant(float("-inf"), tf.float64))
    return logits - tf.reduce_logsumexp(masked, axis=1, keepdims=True)


def _first_best(values, segments, count, *, highest: bool):
    """Per segment (pair), the index of its first window with the highest (or lowest) value."""
    index = tf.range(tf.size(values, out_type=tf.int64))
    # The segment reductions start from the lowest finite float: keep -inf (no span) comparable.
    values = tf.clip_by_value(values, tf.float32.min, tf.float32.max)
    if highest:
        top = tf.math.unsorted_segment_max(values, segments, count)
    else:
        top = tf.math.unsorted_segment_min(values, segments, count)
    is_top = tf.equal(values, tf.gather(top, segments))
    largest = tf.size(values, out_type=tf.int64)
    return tf.math.unsorted_segment_min(tf.where(is_top, index, largest), segments, count)
