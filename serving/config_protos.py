"""TF Serving's `BatchingParameters`, `SSLConfig` and `MonitoringConfig` messages, which the
`tensorflow-serving-api` wheel does not ship (it has `apis/` and a few `config/` modules, but not
`servables/tensorflow/session_bundle_config_pb2`, `config/ssl_config_pb2` or
`config/monitoring_config_pb2`).

They are only the formats of TF Serving's flag files, never sent on the wire. The messages are
built here from descriptors with TF Serving's package, names, field numbers and types
(`servables/tensorflow/session_bundle_config.proto`, `config/ssl_config.proto`,
`config/monitoring_config.proto`), in a private descriptor pool, so that `text_format` parses the
very files `tensorflow_model_server` reads. When a `tensorflow_serving` install does provide the
generated modules, those are used.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import wrappers_pb2

_PACKAGE = "tensorflow.serving"
_FIELD = descriptor_pb2.FieldDescriptorProto

# (name, number, type, type_name, label) of BatchingParameters, TF Serving @ 2.x.
_BATCHING_PARAMETERS_FIELDS = (
    ("max_batch_size", 1, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value",
     _FIELD.LABEL_OPTIONAL),
    ("batch_timeout_micros", 2, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value",
     _FIELD.LABEL_OPTIONAL),
    ("max_enqueued_batches", 3, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value",
     _FIELD.LABEL_OPTIONAL),
    ("num_batch_threads", 4, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value",
     _FIELD.LABEL_OPTIONAL),
    ("thread_pool_name", 5, _FIELD.TYPE_MESSAGE, ".google.protobuf.StringValue",
     _FIELD.LABEL_OPTIONAL),
    ("allowed_batch_sizes", 6, _FIELD.TYPE_INT64, None, _FIELD.LABEL_REPEATED),
    ("pad_variable_length_inputs", 7, _FIELD.TYPE_BOOL, None, _FIELD.LABEL_OPTIONAL),
    ("enable_large_batch_splitting", 8, _FIELD.TYPE_MESSAGE, ".google.protobuf.BoolValue",
     _FIELD.LABEL_OPTIONAL),
    ("max_execution_batch_size", 9, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value",
     _FIELD.LABEL_OPTIONAL),
)

_SSL_CONFIG_FIELDS = (
    ("server_key", 1, _FIELD.TYPE_STRING, None, _FIELD.LABEL_OPTIONAL),
    ("server_cert", 2, _FIELD.TYPE_STRING, None, _FIELD.LABEL_OPTIONAL),
    ("custom_ca", 3, _FIELD.TYPE_STRING, None, _FIELD.LABEL_OPTIONAL),
    ("client_verify", 4, _FIELD.TYPE_BOOL, None, _FIELD.LABEL_OPTIONAL),
)

_PROMETHEUS_CONFIG_FIELDS = (
    ("enable", 1, _FIELD.TYPE_BOOL, None, _FIELD.LABEL_OPTIONAL),
    ("path", 2, _FIELD.TYPE_STRING, None, _FIELD.LABEL_OPTIONAL),
)

_MONITORING_CONFIG_FIELDS = (
    ("prometheus_config", 1, _FIELD.TYPE_MESSAGE, f".{_PACKAGE}.PrometheusConfig",
     _FIELD.LABEL_OPTIONAL),
)


def _file_descriptor(name: str, *messages) -> descriptor_pb2.FileDescriptorProto:
    """A .proto file of `(message name, fields)` pairs in TF Serving's package."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=name, package=_PACKAGE, syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    for message, fields in messages:
        message_proto = proto.message_type.add(name=message)
        for field_name, number, field_type, type_name, label in fields:
            field = message_proto.field.add(name=field_name, number=number, type=field_type,
                                            label=label, json_name=_json_name(field_name))
            if type_name:
                field.type_name = type_name
    return proto


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@functools.lru_cache(maxsize=None)
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(_file_descriptor("tfinetune/serving/session_bundle_config.proto",
                              ("BatchingParameters", _BATCHING_PARAMETERS_FIELDS)))
    pool.Add(_file_descriptor("tfinetune/serving/ssl_config.proto",
                              ("SSLConfig", _SSL_CONFIG_FIELDS)))
    pool.Add(_file_descriptor("tfinetune/serving/monitoring_config.proto",
                              ("PrometheusConfig", _PROMETHEUS_CONFIG_FIELDS),
                              ("MonitoringConfig", _MONITORING_CONFIG_FIELDS)))
    return pool


@functools.lru_cache(maxsize=None)
def batching_parameters_message() -> type:
    """The `tensorflow.serving.BatchingParameters` message class."""
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
    except ImportError:
        return message_factory.GetMessageClass(
            _pool().FindMessageTypeByName(f"{_PACKAGE}.BatchingParameters"))
    return session_bundle_config_pb2.BatchingParameters


@functools.lru_cache(maxsize=None)
def ssl_config_message() -> type:
    """The `tensorflow.serving.SSLConfig` message class."""
    try:
        from tensorflow_serving.config import ssl_config_pb2
    except ImportError:
        return message_factory.GetMessageClass(
            _pool().FindMessageTypeByName(f"{_PACKAGE}.SSLConfig"))
    return ssl_config_pb2.SSLConfig


@functools.lru_cache(maxsize=None)
def monitoring_config_message() -> type:
    """The `tensorflow.serving.MonitoringConfig` message class."""
    try:
        from tensorflow_serving.config import monitoring_config_pb2
    except ImportError:
        return message_factory.GetMessageClass(
            _pool().FindMessageTypeByName(f"{_PACKAGE}.MonitoringConfig"))
    return monitoring_config_pb2.MonitoringConfig
