"""What route handlers get from the app: the process's runtime."""

from fastapi import Request

from services.apps.runtime import Runtime


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime
