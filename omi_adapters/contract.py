"""The model contract: :class:`Tensor`, the :func:`model` decorator and the :class:`Model` runtime.

Everything about a predict function that can be known is checked once, when the decorator
runs: datatypes, shapes, names, and how request inputs bind to its parameters. Requests are
then checked against the declaration, and results against the declared outputs.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, is_typeddict

import numpy as np

from omi_adapters.batching import BatchPolicy
from omi_adapters.dtypes import coerce_output
from omi_adapters.errors import ConfigurationError, InvalidInputError, PredictError
from omi_adapters.loading import Loader, LoadPolicy, LoadState
from omi_adapters.metadata import (
    Description,
    Features,
    OmiMetadata,
    Resources,
    Timeouts,
    build_metadata,
    parse_duration,
)
from omi_adapters.types import DATATYPES, InputTensor

__all__ = ["Model", "Tensor", "model"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")

log = logging.getLogger("omi_adapters")


def _describe(result: Any, depth: int = 0) -> str:
    """What predict returned, for the log: types, dtypes and shapes, never the data of large arrays."""
    if isinstance(result, np.ndarray):
        if result.size <= 8:
            return f"{result.dtype} {list(result.shape)} {result.tolist()!r}"
        return f"{result.dtype} {list(result.shape)}"
    if isinstance(result, Mapping) and depth == 0:
        return "{" + ", ".join(f"{k!r}: {_describe(v, 1)}" for k, v in list(result.items())[:16]) + "}"
    text = repr(result)
    return f"{type(result).__name__} {text[:80] + '...' if len(text) > 80 else text}"


@dataclass(frozen=True)
class Tensor:
    """A declared input or output tensor.

    Args:
        name: the tensor's name on the wire (and the predict parameter it binds to).
        datatype: one of the thirteen OIP datatypes (``"FP32"``, ``"BYTES"``, ...).
        shape: the full shape predict sees, ``-1`` for a variable dimension. When the model
            declares ``max_batch_size > 0`` the first dimension is the batch and must be ``-1``.
        optional: an input the request may leave out (its parameter needs a default).
        description: free text, shown in OMI ``Status``.
        media_types: OMI media types (inputs: accepted types; outputs: the first is used).
        max_size: OMI size limit of the tensor's file, such as ``"10M"``.
        labels: an output's class labels, by index along its last (class) dimension: Triton's
            classification extension answers ``"value:index:label"`` with them, and
            ``omi build triton`` writes them as the output's ``label_filename``.
    """

    name: str
    datatype: str
    shape: Sequence[int]
    optional: bool = False
    description: str = ""
    media_types: Sequence[str] = ()
    max_size: str | None = None
    labels: Sequence[str] | None = None
    # The fixed dimensions, (index, size), worked out once for matches(), which runs per request.
    _fixed: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigurationError(
                f"tensor name {self.name!r} must be a non-empty string of letters, digits, '_', '.', '-'"
            )
        if self.datatype not in DATATYPES:
            raise ConfigurationError(
                f"tensor '{self.name}': unknown datatype {self.datatype!r}; expected one of {', '.join(DATATYPES)}"
            )
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else None
        if shape is None or any(type(d) is not int or d < -1 for d in shape):
            raise ConfigurationError(
                f"tensor '{self.name}': shape must be a list of integers >= -1, got {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "_fixed", tuple((i, d) for i, d in enumerate(shape) if d != -1))
        object.__setattr__(self, "media_types", tuple(self.media_types))
        if self.labels is not None:
            if isinstance(self.labels, (str, bytes)) or not isinstance(self.labels, Sequence):
                raise ConfigurationError(f"tensor '{self.name}': labels must be a list of strings")
            for label in self.labels:
                # One label per line of Triton's labels file: a newline would shift every label after it.
                if not isinstance(label, str) or "\n" in label or "\r" in label:
                    raise ConfigurationError(
                        f"tensor '{self.name}': labels must be strings without line breaks, got {label!r}"
                    )
            object.__setattr__(self, "labels", tuple(self.labels))

    def describe(self) -> str:
        """``FP32 [-1, 4]``: the datatype and shape as error messages show them."""
        return f"{self.datatype} {list(self.shape)}"

    def matches(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete ``shape`` fits this declaration (same rank, fixed dims equal)."""
        if len(shape) != len(self.shape):
            return False
        for index, size in self._fixed:
            if shape[index] != size:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The OIP ``$metadata_tensor`` of this tensor."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Model:
    """A served model: its declaration, its load state, and the checked path to predict.

    Made by the :func:`model` decorator. Adapters call :meth:`start` at start-up,
    :meth:`wait_ready` before a request, then :meth:`bind_inputs`, the predict function
    (:attr:`predict_fn`, sync or async) and :meth:`check_outputs`.
    """

    def __init__(
        self,
        target: Callable[..., Any] | type,
        *,
        name: str,
        version: str,
        inputs: Sequence[Tensor],
        outputs: Sequence[Tensor],
        load: str,
        max_batch_size: int,
        ready_timeout: float,
        metadata: OmiMetadata,
        run_in_thread: bool = True,
        max_concurrency: int | None = None,
        max_queue: int | None = None,
        max_queue_delay: float = 0.0,
        preferred_batch_sizes: Sequence[int] = (),
        stream: bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(f"model name {name!r} must be letters, digits, '_', '.', '-'")
        self.name = name
        self.version = str(version)
        if not _NAME.match(self.version):
            raise ConfigurationError(f"model '{name}': version {version!r} must be letters, digits, '_', '.', '-'")
        self.inputs = _tensors(inputs, f"model '{name}' inputs")
        self.outputs = _tensors(outputs, f"model '{name}' outputs")
        if not self.outputs:
            raise ConfigurationError(f"model '{name}' declares no outputs")
        for tensor in self.inputs:
            if tensor.labels is not None:
                raise ConfigurationError(f"model '{name}': input '{tensor.name}' has labels; only outputs can")
        try:
            self.load_policy = LoadPolicy(load)
        except ValueError:
            raise ConfigurationError(
                f"model '{name}': load must be 'eager', 'lazy' or 'background', got {load!r}"
            ) from None
        if type(max_batch_size) is not int or max_batch_size < 0:
            raise ConfigurationError(f"model '{name}': max_batch_size must be an integer >= 0, got {max_batch_size!r}")
        self.max_batch_size = max_batch_size
        #: How requests are merged into batches; None when the model does not batch.
        self.batch_policy: BatchPolicy | None = None
        if max_batch_size > 0:
            try:
                self.batch_policy = BatchPolicy(max_batch_size, max_queue_delay, tuple(preferred_batch_sizes))
            except ConfigurationError as exc:
                raise ConfigurationError(f"model '{name}': {exc}") from None
        elif max_queue_delay or preferred_batch_sizes:
            raise ConfigurationError(f"model '{name}': max_queue_delay and preferred_batch_sizes need max_batch_size")
        if max_batch_size > 0:
            for tensor in (*self.inputs, *self.outputs):
                if not tensor.shape or tensor.shape[0] != -1:
                    raise ConfigurationError(
                        f"model '{name}' batches (max_batch_size={max_batch_size}), so tensor "
                        f"'{tensor.name}' needs -1 as its first (batch) dimension, got {list(tensor.shape)}"
                    )
        self.ready_timeout = float(ready_timeout)
        self.metadata = metadata
        if not isinstance(run_in_thread, bool):
            raise ConfigurationError(f"model '{name}': run_in_thread must be True or False, got {run_in_thread!r}")
        self.run_in_thread = run_in_thread
        for option, value in (("max_concurrency", max_concurrency), ("max_queue", max_queue)):
            if value is not None and (type(value) is not int or value < (1 if option == "max_concurrency" else 0)):
                low = 1 if option == "max_concurrency" else 0
                raise ConfigurationError(f"model '{name}': {option} must be an integer >= {low}, got {value!r}")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        #: The declared run timeout in seconds (None for "0s"): every request's deadline is at most this.
        self.run_timeout: float | None = parse_duration(metadata.timeouts.run, f"model '{name}' timeouts.run") or None
        self.target = target
        self._input_by_name = {t.name: t for t in self.inputs}
        self._output_names = frozenset(t.name for t in self.outputs)
        #: Each output and how its errors name it, for the check of every result.
        self._output_checks = [(t, f"output '{t.name}'") for t in self.outputs]

        if isinstance(target, type):
            predict = getattr(target, "predict", None)
            if not callable(predict):
                raise ConfigurationError(f"model '{name}': class {target.__name__} has no predict method")
            self.is_async, self.streaming = _kind(predict, stream, f"model '{name}': {target.__name__}.predict")
            _bind(predict, self.inputs, f"{target.__name__}.predict", skip_self=True)
            _check_returns(predict, self.outputs, f"{target.__name__}.predict")
            loader_fn: Callable[[], Any] = self._instantiate
        else:
            if not callable(target):
                raise ConfigurationError(f"model '{name}': @model needs a function or a class, got {target!r}")
            self.is_async, self.streaming = _kind(target, stream, f"model '{name}'")
            _bind(target, self.inputs, getattr(target, "__name__", repr(target)), skip_self=False)
            _check_returns(target, self.outputs, getattr(target, "__name__", repr(target)))
            loader_fn = lambda: target
        if self.streaming and max_batch_size > 0:
            # One request's responses come from one generator: rows of several requests cannot
            # share a call, and a batch would hold every stream in it until the longest ended.
            raise ConfigurationError(
                f"model '{name}' streams (its predict is a generator), so it cannot batch: "
                f"remove max_batch_size={max_batch_size}"
            )
        self._loader: Loader[Callable[..., Any]] = Loader(name, loader_fn, self.load_policy)
        self.__doc__ = getattr(target, "__doc__", None)

    def __repr__(self) -> str:
        return f"<Model {self.name} v{self.version} {self.state.value}>"

    def __call__(self, **inputs: Any) -> Any:
        """Call the predict function directly (loading first if needed), without any checks."""
        return self.wait_ready()(**inputs)

    # --- loading -------------------------------------------------------------------------

    def _instantiate(self) -> Callable[..., Any]:
        instance = self.target()
        load = getattr(instance, "load", None)
        if callable(load):
            result = load()
            if inspect.isawaitable(result):
                import asyncio

                asyncio.run(_await(result))
        return instance.predict  # type: ignore[no-any-return]

    @property
    def state(self) -> LoadState:
        """UNLOADED, LOADING, READY or FAILED."""
        return self._loader.state

    @property
    def ready(self) -> bool:
        """True when requests can be served now, without loading."""
        return self._loader.ready

    @property
    def load_error(self) -> BaseException | None:
        """The exception of the last failed load, if the model is in state FAILED."""
        return self._loader.error

    @property
    def load_seconds(self) -> float | None:
        """How long the last load took."""
        return self._loader.seconds

    def start(self) -> None:
        """Load as the policy says: now (eager), in a thread (background), or later (lazy)."""
        self._loader.start()

    def load(self, retry: bool = False) -> None:
        """Load now; after a failed load, only ``retry=True`` runs the loader again."""
        self._loader.load(retry=retry)

    @property
    def unloaded(self) -> bool:
        """Taken out of service by :meth:`unload` (until :meth:`reload`)."""
        return self._loader.unloaded

    @property
    def load_count(self) -> int:
        """Loads run to their end so far, successful or not."""
        return self._loader.loads

    def check_in_service(self) -> None:
        """Raise :class:`~omi_adapters.errors.ModelUnloadedError` if the model is unloaded."""
        self._loader.check_in_service()

    def reload(self) -> None:
        """Run the loader again (a ready model serves on meanwhile, and if it fails); serve again if unloaded."""
        self._loader.reload()

    def unload(self) -> None:
        """Take the model out of service: not ready, every request refused, until :meth:`reload`."""
        self._loader.unload()

    def load_in_background(self) -> None:
        """Start loading in a thread now, unless a load has already started."""
        self._loader.load_in_background()

    def loaded(self) -> Callable[..., Any] | None:
        """The bound predict function if the model is loaded now, else None (nothing waits or loads)."""
        return self._loader.loaded()

    def wait_ready(self, timeout: float | None = None) -> Callable[..., Any]:
        """Return the bound predict function once loaded (lazy models load here)."""
        return self._loader.wait(self.ready_timeout if timeout is None else timeout)

    # --- requests ------------------------------------------------------------------------

    def bind_inputs(self, inputs: Sequence[InputTensor]) -> dict[str, np.ndarray[Any, Any]]:
        """Check request inputs against the declaration; return predict's keyword arguments."""
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        batch: int | None = None
        for tensor in inputs:
            spec = self._input_by_name.get(tensor.name)
            if spec is None:
                known = ", ".join(t.name for t in self.inputs) or "none"
                raise InvalidInputError(f"unknown input '{tensor.name}'; model '{self.name}' takes: {known}")
            if tensor.name in arrays:
                raise InvalidInputError(f"input '{tensor.name}' is given more than once")
            if tensor.datatype != spec.datatype or not spec.matches(tensor.shape):
                raise InvalidInputError(
                    f"input '{tensor.name}': expected {spec.describe()}, got {tensor.datatype} {list(tensor.shape)}"
                )
            if self.max_batch_size:
                size = tensor.shape[0]
                if size > self.max_batch_size:
                    raise InvalidInputError(
                        f"input '{tensor.name}': batch size {size} exceeds max_batch_size {self.max_batch_size}"
                    )
                if batch is not None and size != batch:
                    raise InvalidInputError(
                        f"input '{tensor.name}': batch size {size} differs from the other inputs' {batch}"
                    )
                batch = size
            arrays[tensor.name] = tensor.data
        for spec in self.inputs:
            if spec.name not in arrays and not spec.optional:
                raise InvalidInputError(f"missing input '{spec.name}' ({spec.describe()})")
        return arrays

    def check_outputs(self, result: Any, batch: int | None = None) -> dict[str, np.ndarray[Any, Any]]:
        """Turn predict's result into declared outputs; a wrong result is a :class:`PredictError`, logged."""
        try:
            return self._check_outputs(result, batch)
        except PredictError as exc:
            # The client sees only the message; the log says what predict actually returned.
            log.error("model '%s' version %s broke its output contract: %s; predict returned %s",
                      self.name, self.version, exc.message, _describe(result))  # fmt: skip
            raise

    def _check_outputs(self, result: Any, batch: int | None) -> dict[str, np.ndarray[Any, Any]]:
        if result is None:
            expected = "an array" if len(self.outputs) == 1 else f"a dict with outputs {sorted(self._output_names)}"
            raise PredictError(f"model '{self.name}' returned None; predict must return {expected}")
        kind = type(result)
        # The usual results, an array or a dict, are told by their type: an isinstance check
        # against the Mapping ABC is a Python-level call on every request.
        if kind is np.ndarray or (kind is not dict and not isinstance(result, Mapping)):
            if len(self.outputs) != 1:
                raise PredictError(
                    f"model '{self.name}' must return a dict with outputs {sorted(self._output_names)}, "
                    f"got {type(result).__name__}"
                )
            result = {self.outputs[0].name: result}
        elif result.keys() != self._output_names:
            missing = self._output_names.difference(result)
            if missing:
                names = ", ".join(repr(m) for m in sorted(missing))
                raise PredictError(f"model '{self.name}' returned no output {names}")
            extra = ", ".join(sorted(map(str, set(result).difference(self._output_names))))
            raise PredictError(f"model '{self.name}' returned undeclared output(s) {extra}")
        outputs: dict[str, np.ndarray[Any, Any]] = {}
        for spec, where in self._output_checks:
            try:
                array = coerce_output(spec.datatype, result[spec.name], where)
            except ValueError as exc:
                raise PredictError(str(exc)) from None
            if not spec.matches(array.shape):
                raise PredictError(f"{where}: expected {spec.describe()}, got {array.dtype} {list(array.shape)}")
            if batch is not None and self.max_batch_size and array.shape[0] != batch:
                raise PredictError(f"{where}: batch size {array.shape[0]} does not match the input batch {batch}")
            outputs[spec.name] = array
        return outputs

    def contract(self) -> dict[str, Any]:
        """The whole declaration as JSON-ready data (what ``omi inspect`` prints)."""
        return {
            "name": self.name,
            "version": self.version,
            "inputs": [dict(t.to_dict(), optional=t.optional) if t.optional else t.to_dict() for t in self.inputs],
            "outputs": [dict(t.to_dict(), labels=list(t.labels)) if t.labels else t.to_dict() for t in self.outputs],
            "load": self.load_policy.value,
            "max_batch_size": self.max_batch_size,
            **(
                {
                    "max_queue_delay": self.batch_policy.max_queue_delay,
                    "preferred_batch_sizes": list(self.batch_policy.preferred_batch_sizes),
                }
                if self.batch_policy
                else {}
            ),
            "async": self.is_async,
            "stream": self.streaming,
            "run_in_thread": self.run_in_thread and not self.is_async,
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
            "omi": self.metadata.to_dict(),
        }


def _kind(fn: Callable[..., Any], stream: bool | None, label: str) -> tuple[bool, bool]:
    """``(is_async, streaming)`` of a predict: a generator function streams unless told otherwise.

    ``stream=True`` declares a predict that returns an iterator without being a generator
    function (a wrapped one); what it returns is then checked on every call.
    """
    if stream is not None and not isinstance(stream, bool):
        raise ConfigurationError(f"{label}: stream must be True, False or None, got {stream!r}")
    unwrapped = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(unwrapped):
        if stream is False:
            raise ConfigurationError(f"{label}: an async generator predict always streams; drop stream=False")
        return True, True
    if inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(unwrapped):
        if stream is False:
            raise ConfigurationError(f"{label}: a generator predict always streams; drop stream=False")
        return False, True
    return inspect.iscoroutinefunction(fn), bool(stream)


def _tensors(tensors: Sequence[Tensor], where: str) -> tuple[Tensor, ...]:
    if isinstance(tensors, (str, bytes)) or not isinstance(tensors, Sequence):
        raise ConfigurationError(f"{where} must be a list of Tensor")
    seen: set[str] = set()
    for tensor in tensors:
        if not isinstance(tensor, Tensor):
            raise ConfigurationError(f"{where} must be Tensor(...) objects, got {tensor!r}")
        if tensor.name in seen:
            raise ConfigurationError(f"{where}: duplicate tensor name '{tensor.name}'")
        seen.add(tensor.name)
    return tuple(tensors)


def _bind(fn: Callable[..., Any], inputs: tuple[Tensor, ...], label: str, *, skip_self: bool) -> None:
    """Check that ``fn``'s parameters and the declared inputs match; names bind one to one."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{label}: cannot read its signature ({exc})") from None
    if skip_self and params:
        params = params[1:]
    declared = {t.name: t for t in inputs}
    var_keyword = False
    named: dict[str, inspect.Parameter] = {}
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
        elif param.kind is param.VAR_POSITIONAL:
            raise ConfigurationError(f"{label}: *{param.name} cannot bind inputs; name a parameter per input")
        elif param.kind is param.POSITIONAL_ONLY:
            raise ConfigurationError(f"{label}: positional-only parameter '{param.name}' cannot bind an input")
        elif param.name not in declared:
            raise ConfigurationError(
                f"{label}: parameter '{param.name}' is not a declared input (inputs: {', '.join(declared) or 'none'})"
            )
        else:
            named[param.name] = param
    for tensor in inputs:
        bound = named.get(tensor.name)
        if bound is None and not var_keyword:
            raise ConfigurationError(f"{label}: declared input '{tensor.name}' has no parameter of that name")
        if tensor.optional and bound is not None and bound.default is bound.empty:
            raise ConfigurationError(f"{label}: optional input '{tensor.name}' needs a default value")


def _check_returns(fn: Callable[..., Any], outputs: tuple[Tensor, ...], label: str) -> None:
    """Where the return annotation says what predict returns, check it against the outputs."""
    try:
        annotation = inspect.signature(fn, eval_str=True).return_annotation
    except Exception:  # noqa: BLE001 - an unresolvable annotation tells us nothing
        return
    if annotation is inspect.Signature.empty:
        return
    if is_typeddict(annotation):
        keys = set(annotation.__annotations__)
        names = {t.name for t in outputs}
        if keys != names:
            raise ConfigurationError(
                f"{label} returns {annotation.__name__} with keys {sorted(keys)}, but the outputs are {sorted(names)}"
            )
    elif (annotation is np.ndarray or getattr(annotation, "__origin__", None) is np.ndarray) and len(outputs) != 1:
        raise ConfigurationError(
            f"{label} returns one array, but {len(outputs)} outputs are declared "
            f"({', '.join(t.name for t in outputs)}); return a dict by output name"
        )


async def _await(value: Any) -> Any:
    return await value


def model(
    _target: Any = None,
    /,
    *,
    name: str | None = None,
    version: str | int = "1",
    inputs: Sequence[Tensor] = (),
    outputs: Sequence[Tensor] = (),
    load: str = "eager",
    max_batch_size: int = 0,
    ready_timeout: float = 60.0,
    run_in_thread: bool = True,
    max_concurrency: int | None = None,
    max_queue: int | None = None,
    max_queue_delay: float = 0.0,
    preferred_batch_sizes: Sequence[int] = (),
    stream: bool | None = None,
    author: str = "",
    model_type: str = "grpc",
    source: str = "omi-adapters",
    description: str | Mapping[str, str] | Description | None = None,
    resources: Mapping[str, Any] | Resources | None = None,
    timeouts: Mapping[str, str] | Timeouts | None = None,
    features: Mapping[str, Any] | Features | None = None,
) -> Callable[[Callable[..., Any] | type], Model]:
    """Declare a model: a predict function, or a class with ``load(self)`` and ``predict(self, ...)``.

    Args:
        name: the model's name on the wire (default: the function's or class's name).
        version: the model's version.
        inputs: the declared inputs; each binds to the predict parameter of the same name.
        outputs: the declared outputs; predict returns one array (one output) or a dict by name.
        load: ``"eager"`` (at start-up), ``"lazy"`` (first request), ``"background"`` (a thread).
        max_batch_size: > 0 when the first dimension of every tensor is a batch predict accepts
            up to this size. Concurrent requests, from every front end, are then merged into
            batches of up to this many rows (dynamic batching; Triton batches the same way).
        max_queue_delay: seconds the oldest waiting request may be held, while a predict slot
            is free, for others to fill its batch (Triton's ``max_queue_delay_microseconds``).
            0 (the default) merges only the requests that queue while the model is busy.
        preferred_batch_sizes: batch sizes to cut batches to when more rows wait (Triton's
            ``preferred_batch_size``).
        stream: whether predict streams its responses. A generator predict (``def`` with
            ``yield``, or ``async def`` with ``yield``) streams by itself: each yield is one
            response (an array, or a dict of arrays by output name), checked against the
            outputs like a return value. ``True`` declares a predict that returns an
            iterator or async iterator without being a generator function. A streaming model
            cannot batch (``max_batch_size`` must be 0).
        ready_timeout: how long a request waits for a ``background`` load before a 503.
        run_in_thread: a sync predict runs in the server's thread pool, so that a slow one never
            stalls other requests. ``False`` runs it on the event loop instead, which saves the
            thread hand-off (tens of microseconds): only for a predict that takes microseconds,
            such as a small numpy expression: while it runs, nothing else is served, and no
            timeout can cut it short. Async predicts always run on the loop.
        max_concurrency: how many calls of this predict may run at once (default: the server's
            ``--predict-threads`` for a sync predict, 64 for an async one). Each model has its
            own slots and its own threads, so a hung predict never holds up another model.
        max_queue: how many requests may wait for a free slot (default: the server's
            ``--max-queue``); more are refused at once with 503 and ``Retry-After``.
        author, model_type, source, description, resources, timeouts, features: OMI metadata,
            as the OMI ``Status`` reply carries it (OMI's ``model.proto``, ``StatusResponse``).

    Raises:
        ConfigurationError: when the declaration is inconsistent, with a message naming why.
    """

    if _target is not None:
        # @model without parentheses: it would be called with the function itself.
        what = getattr(_target, "__name__", repr(_target))
        raise ConfigurationError(
            f"@model on {what} needs its tensors: write @model(inputs=[Tensor(...)], outputs=[Tensor(...)])"
        )

    def decorate(obj: Callable[..., Any] | type) -> Model:
        metadata = build_metadata(
            author=author,
            model_type=model_type,
            source=source,
            description=description,
            resources=resources,
            timeouts=timeouts,
            features=features,
        )
        return Model(
            obj,
            name=name or str(getattr(obj, "__name__", "")),
            version=str(version),
            inputs=inputs,
            outputs=outputs,
            load=load,
            max_batch_size=max_batch_size,
            ready_timeout=ready_timeout,
            metadata=metadata,
            run_in_thread=run_in_thread,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            max_queue_delay=max_queue_delay,
            preferred_batch_sizes=preferred_batch_sizes,
            stream=stream,
        )

    return decorate
