"""The gRPC job API (JobService, ModelService, DeploymentService) over the plain-Python cores."""
