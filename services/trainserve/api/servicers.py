"""Thin gRPC servicers: unpack the request, call the core in a worker thread (the stores are
synchronous Redis clients), pack the response."""
from __future__ import annotations

import asyncio
import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

from trainserve.api.metrics import SUBMISSIONS
from trainserve.jobs.artifacts import JobArtifacts
from trainserve.jobs.service import FULL_JOB_ID, JobsCore, resolve_job_id, resolve_job_refs
from trainserve.api.auth import principal
from trainserve.core.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from trainserve.core.pb import (dataset_pb2, dataset_pb2_grpc, deployment_pb2, deployment_pb2_grpc,
                           job_pb2, job_pb2_grpc, model_pb2, model_pb2_grpc)
from trainserve.registry.datasets import DatasetsCore
from trainserve.registry.service import DeploymentsCore, ModelsCore
from trainserve.core.tenancy import Principal


EXPORT_CHUNK_BYTES = 1 << 20  # ModelService.ExportModel streams the file in these
ARTIFACT_CHUNK_BYTES = 1 << 20  # JobService.GetArtifact likewise
USER_MAX_STREAMS = 16  # open WatchJob/StreamLogs streams per user and API process
MAX_STREAMS = 256  # open WatchJob/StreamLogs streams in all, per API process
USER_MAX_RENDERS = 2  # plot renderings and exports in progress per user and API process
MAX_RENDERS = 4  # the same in all; also the threads of their pool


def submitter(request_user: str) -> tuple[str, Principal]:
    """(the owner of a submitted job, the principal its names and inputs are checked for):
    the caller, or for an admin the user named in the request (submitting on their behalf).
    Anyone else naming another user is refused."""
    me = principal()
    if not request_user or request_user == me.user:
        return me.user, me
    if not me.is_admin:
        raise PermissionDenied("only an admin may submit a job as another user")
    return request_user, Principal(request_user, "user")


class _Blocking:
    """Runs blocking store calls off the event loop, in a pool sized for long polls."""

    def __init__(self, pool: ThreadPoolExecutor):
        self.pool = pool

    async def __call__(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))


class Slots:
    """How many calls of one kind each user has in progress in this process, at most `limit`
    each and `total` in all (0: no limit); RESOURCE_EXHAUSTED past either, naming the setting.
    Used from the event loop only."""
    what = "calls in progress"
    user_setting = total_setting = ""

    def __init__(self, limit: int, total: int):
        self.limit, self.total = limit, total
        self.open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, user: str):
        """One slot of `user`'s for the `with` block; free again when the block ends, fails or
        its client goes away."""
        n = self.open.get(user, 0)
        if self.limit and n >= self.limit:
            raise ResourceExhausted(f"user {user!r} has {n} {self.what}, the limit "
                                    f"({self.limit}, {self.user_setting}); wait for them or "
                                    "close some")
        if self.total and sum(self.open.values()) >= self.total:
            raise ResourceExhausted(f"this server has {self.total} {self.what}, its limit "
                                    f"({self.total_setting}); try again later")
        self.open[user] = n + 1
        try:
            yield
        finally:
            self.open[user] -= 1
            if not self.open[user]:
                del self.open[user]


class StreamSlots(Slots):
    """Open WatchJob/StreamLogs streams. A live stream holds a thread of the streams' own pool
    for up to a second at a time: one user's watches must not take them all, and all users'
    together must not make every stream wait seconds for a thread."""
    what = "open WatchJob/StreamLogs streams"
    user_setting, total_setting = "user_max_streams", "max_streams"

    def __init__(self, limit: int = USER_MAX_STREAMS, total: int = MAX_STREAMS):
        super().__init__(limit, total)


class RenderSlots(Slots):
    """Plot renderings (ListArtifacts/GetArtifact) and model exports: each runs one at a time
    per process (pyplot and the exporters keep global state) on a small pool of their own, so
    one user's many requests neither queue ahead of everyone else's nor hold the threads of
    other calls."""
    what = "plot renderings or model exports in progress"
    user_setting, total_setting = "user_max_renders", "max_renders"

    def __init__(self, limit: int = USER_MAX_RENDERS, total: int = MAX_RENDERS):
        super().__init__(limit, total)


class Rendering:
    """Where plot renderings and exports run: `slots` bound them, `run` (a pool of their own)
    runs them."""

    def __init__(self, slots: RenderSlots, run: _Blocking):
        self.slots, self.run = slots, run

    async def __call__(self, fn, *args):
        with self.slots.hold(principal().user):
            return await self.run(fn, *args)


class JobServicer(job_pb2_grpc.JobServiceServicer):
    """`run` takes the short blocking calls; `follow` (default: `run`) the steps of live
    streams, which block up to a second each, so that streams never delay other calls;
    `render` the plot renderings behind ListArtifacts and GetArtifact."""

    def __init__(self, core: JobsCore, run: _Blocking, streams: StreamSlots | None = None,
                 follow: _Blocking | None = None, render: Rendering | None = None):
        self.core = core
        self.run = run
        self.follow = follow or run
        self.render = render or Rendering(RenderSlots(), run)
        self.artifacts = JobArtifacts(core)
        self.streams = streams or StreamSlots()

    async def SubmitJob(self, request, context):
        owner, caller = submitter(request.user)
        job, created = await self.run(self.core.submit, request.spec, request.request_id, owner,
                                      caller, principal())
        if created:
            SUBMISSIONS.inc()
        return job

    async def job_id(self, given: str) -> str:
        """The full id of the job `given` names: its id or a unique prefix of it."""
        if FULL_JOB_ID.fullmatch(given):
            return given  # the common case costs nothing
        return await self.run(resolve_job_id, self.core, given, principal())

    async def GetJob(self, request, context):
        return await self.run(self.core.get, await self.job_id(request.job_id), principal())

    async def ListJobs(self, request, context):
        jobs, token = await self.run(self.core.list, request.state, request.page_size,
                                     request.page_token, principal(), list(request.labels))
        return job_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def CancelJob(self, request, context):
        return await self.run(self.core.cancel, await self.job_id(request.job_id), principal())

    async def WatchJob(self, request, context):
        with self.streams.hold(principal().user):
            job_id = await self.job_id(request.job_id)
            await self.run(self.core.get, job_id, principal())  # NOT_FOUND: before
            # The store's follow() blocks at most a second a step, on the streams' threads.
            events = self.core.store.events.follow(
                job_id, request.after_event_id,
                is_done=lambda: self.core.is_terminal(job_id))
            while (event := await self.follow(next, events, None)) is not None:
                yield event

    async def ListArtifacts(self, request, context):
        infos = await self.render(self.artifacts.list, await self.job_id(request.job_id),
                                  principal())
        return job_pb2.ListArtifactsResponse(artifacts=infos)

    async def GetArtifact(self, request, context):
        info, data = await self.render(self.artifacts.read, await self.job_id(request.job_id),
                                       request.name, principal())
        for start in range(0, max(len(data), 1), ARTIFACT_CHUNK_BYTES):
            chunk = job_pb2.ArtifactChunk(data=data[start:start + ARTIFACT_CHUNK_BYTES])
            if start == 0:
                chunk.info.CopyFrom(info)
            yield chunk

    async def StreamLogs(self, request, context):
        with self.streams.hold(principal().user):
            lines = await self.run(self.core.logs, await self.job_id(request.job_id),
                                   request.after_id, request.follow, principal())
            while (line := await self.follow(next, lines, None)) is not None:
                yield line

    async def GetJobCurves(self, request, context):
        return await self.run(self.core.curves, await self.job_id(request.job_id),
                              principal())

    async def CompareJobs(self, request, context):
        refs = await self.run(resolve_job_refs, self.core, list(request.job_ids), principal())
        return await self.run(self.core.compare, refs, principal())

    async def DeleteJob(self, request, context):
        return await self.run(self.core.delete, await self.job_id(request.job_id), principal())


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    """`render` runs the exports (`Rendering`; default: on `run`)."""

    def __init__(self, core: ModelsCore, run: _Blocking, render: Rendering | None = None):
        self.core = core
        self.run = run
        self.render = render or Rendering(RenderSlots(), run)

    async def ListModels(self, request, context):
        models = await self.run(self.core.list, request.name, principal())
        return model_pb2.ListModelsResponse(models=models)

    async def GetModel(self, request, context):
        return await self.run(self.core.get, request.name, request.version, principal(),
                              request.alias)

    async def ExportModel(self, request, context):
        from trainserve.registry import export  # torch is loaded on the first export only
        fmt = export.check_format(request.format)
        mv = await self.run(self.core.get, request.name, request.version, principal(),
                            request.alias)
        data = await self.render(export.export_artifact, mv.artifact_uri, fmt, mv.name,
                                 mv.version)
        for start in range(0, max(len(data), 1), EXPORT_CHUNK_BYTES):
            chunk = model_pb2.ExportChunk(data=data[start:start + EXPORT_CHUNK_BYTES])
            if start == 0:
                chunk.filename = export.export_filename(mv.name, mv.version, fmt)
                chunk.format, chunk.version = fmt, mv.version
            yield chunk

    async def SetModelAlias(self, request, context):
        return await self.run(self.core.set_alias, request.name, request.alias,
                              request.version, principal())

    async def DeleteModelAlias(self, request, context):
        return await self.run(self.core.delete_alias, request.name, request.alias, principal())

    async def UpdateModelTags(self, request, context):
        return await self.run(self.core.update_tags, request.name, request.version,
                              request.alias, dict(request.set), list(request.remove),
                              principal())

    async def DeleteModelVersion(self, request, context):
        return await self.run(self.core.delete_version, request.name, request.version,
                              principal())


class DeploymentServicer(deployment_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, core: DeploymentsCore, run: _Blocking):
        self.core = core
        self.run = run

    async def Deploy(self, request, context):
        return await self.run(self.core.deploy, request.name, request.model_name,
                              request.model_version, request.options, principal(),
                              request.model_alias)

    async def Undeploy(self, request, context):
        return await self.run(self.core.undeploy, request.name, principal())

    async def GetDeployment(self, request, context):
        return await self.run(self.core.get, request.name, principal())

    async def ListDeployments(self, request, context):
        deps = await self.run(self.core.list, principal())
        return deployment_pb2.ListDeploymentsResponse(deployments=deps)

    async def Rollout(self, request, context):
        percent = request.canary_percent if request.HasField("canary_percent") else None
        return await self.run(self.core.rollout, request.name, request.model_name,
                              request.model_version, percent, principal(),
                              request.model_alias)

    async def Promote(self, request, context):
        return await self.run(self.core.promote, request.name, principal())

    async def Rollback(self, request, context):
        return await self.run(self.core.rollback, request.name, principal())


class DatasetServicer(dataset_pb2_grpc.DatasetServiceServicer):
    def __init__(self, core: DatasetsCore, run: _Blocking):
        self.core = core
        self.run = run

    async def UploadDataset(self, request_iterator, context):
        upload = None
        try:
            async for req in request_iterator:
                part = req.WhichOneof("part")
                if upload is None:
                    if part != "header":
                        raise InvalidArgument("the first message must be the header",
                                              field="header")
                    upload = await self.run(self.core.begin, req.header, principal())
                elif part == "chunk":
                    await self.run(upload.write, req.chunk)
                else:
                    raise InvalidArgument("only one header, first", field="header")
            if upload is None:
                raise InvalidArgument("empty upload: send a header, then chunks", field="header")
            return await self.run(upload.finish)
        except BaseException:
            if upload is not None:
                upload.abort()
            raise

    async def GetDataset(self, request, context):
        return await self.run(self.core.get, request.name, principal())

    async def ListDatasets(self, request, context):
        return dataset_pb2.ListDatasetsResponse(
            datasets=await self.run(self.core.list, principal()))

    async def DeleteDataset(self, request, context):
        return await self.run(self.core.delete, request.name, principal())
