"""Thin gRPC servicers: unpack the request, call the core in a worker thread (the stores are
synchronous Redis clients), pack the response."""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from trainserve.api.metrics import SUBMISSIONS
from trainserve.jobs.artifacts import JobArtifacts
from trainserve.jobs.service import JobsCore
from trainserve.errors import InvalidArgument
from trainserve.pb import (dataset_pb2, dataset_pb2_grpc, deployment_pb2, deployment_pb2_grpc,
                           job_pb2, job_pb2_grpc, model_pb2, model_pb2_grpc)
from trainserve.registry.datasets import DatasetsCore
from trainserve.registry.service import DeploymentsCore, ModelsCore


EXPORT_CHUNK_BYTES = 1 << 20  # ModelService.ExportModel streams the file in these
ARTIFACT_CHUNK_BYTES = 1 << 20  # JobService.GetArtifact likewise


USER_METADATA = "x-trainserve-user"


def caller_of(context) -> str:
    """Who is calling: for now the `x-trainserve-user` metadata value ("" when absent), which
    the caller asserts itself. The one place to bind callers to authenticated identities."""
    for key, value in context.invocation_metadata() or ():
        if key == USER_METADATA:
            return value if isinstance(value, str) else value.decode()
    return ""


class _Blocking:
    """Runs blocking store calls off the event loop, in a pool sized for long polls."""

    def __init__(self, pool: ThreadPoolExecutor):
        self.pool = pool

    async def __call__(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))


class JobServicer(job_pb2_grpc.JobServiceServicer):
    def __init__(self, core: JobsCore, run: _Blocking):
        self.core = core
        self.run = run
        self.artifacts = JobArtifacts(core)

    async def SubmitJob(self, request, context):
        user = caller_of(context) or request.user
        job, created = await self.run(self.core.submit, request.spec, request.request_id, user)
        if created:
            SUBMISSIONS.inc()
        return job

    async def GetJob(self, request, context):
        return await self.run(self.core.get, request.job_id)

    async def ListJobs(self, request, context):
        jobs, token = await self.run(self.core.list, request.state, request.page_size,
                                     request.page_token)
        return job_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def CancelJob(self, request, context):
        return await self.run(self.core.cancel, request.job_id)

    async def WatchJob(self, request, context):
        await self.run(self.core.get, request.job_id)  # NOT_FOUND before the stream starts
        # The store's follow() blocks at most a second a step, on the pool's threads.
        events = self.core.store.events.follow(
            request.job_id, request.after_event_id,
            is_done=lambda: self.core.is_terminal(request.job_id))
        while (event := await self.run(next, events, None)) is not None:
            yield event

    async def ListArtifacts(self, request, context):
        infos = await self.run(self.artifacts.list, request.job_id)
        return job_pb2.ListArtifactsResponse(artifacts=infos)

    async def GetArtifact(self, request, context):
        info, data = await self.run(self.artifacts.read, request.job_id, request.name)
        for start in range(0, max(len(data), 1), ARTIFACT_CHUNK_BYTES):
            chunk = job_pb2.ArtifactChunk(data=data[start:start + ARTIFACT_CHUNK_BYTES])
            if start == 0:
                chunk.info.CopyFrom(info)
            yield chunk

    async def StreamLogs(self, request, context):
        lines = await self.run(self.core.logs, request.job_id, request.after_id, request.follow)
        while (line := await self.run(next, lines, None)) is not None:
            yield line


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ModelsCore, run: _Blocking):
        self.core = core
        self.run = run

    async def ListModels(self, request, context):
        models = await self.run(self.core.list, request.name)
        return model_pb2.ListModelsResponse(models=models)

    async def GetModel(self, request, context):
        return await self.run(self.core.get, request.name, request.version)

    async def ExportModel(self, request, context):
        from trainserve.registry import export  # torch is loaded on the first export only
        fmt = export.check_format(request.format)
        mv = await self.run(self.core.get, request.name, request.version)
        data = await self.run(export.export_artifact, mv.artifact_uri, fmt, mv.name,
                              mv.version)
        for start in range(0, max(len(data), 1), EXPORT_CHUNK_BYTES):
            chunk = model_pb2.ExportChunk(data=data[start:start + EXPORT_CHUNK_BYTES])
            if start == 0:
                chunk.filename = export.export_filename(mv.name, mv.version, fmt)
                chunk.format, chunk.version = fmt, mv.version
            yield chunk


class DeploymentServicer(deployment_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, core: DeploymentsCore, run: _Blocking):
        self.core = core
        self.run = run

    async def Deploy(self, request, context):
        return await self.run(self.core.deploy, request.name, request.model_name,
                              request.model_version, request.options)

    async def Undeploy(self, request, context):
        return await self.run(self.core.undeploy, request.name)

    async def GetDeployment(self, request, context):
        return await self.run(self.core.get, request.name)

    async def ListDeployments(self, request, context):
        deps = await self.run(self.core.list)
        return deployment_pb2.ListDeploymentsResponse(deployments=deps)

    async def Rollout(self, request, context):
        percent = request.canary_percent if request.HasField("canary_percent") else None
        return await self.run(self.core.rollout, request.name, request.model_name,
                              request.model_version, percent)

    async def Promote(self, request, context):
        return await self.run(self.core.promote, request.name)

    async def Rollback(self, request, context):
        return await self.run(self.core.rollback, request.name)


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
                    upload = await self.run(self.core.begin, req.header)
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
        return await self.run(self.core.get, request.name)

    async def ListDatasets(self, request, context):
        return dataset_pb2.ListDatasetsResponse(datasets=await self.run(self.core.list))

    async def DeleteDataset(self, request, context):
        return await self.run(self.core.delete, request.name)
