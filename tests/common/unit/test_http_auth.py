"""The shared bearer-token dependency, through a real FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from services.common.http.auth import bearer_token


def client(secret: str | None, when_unset: int = 404) -> httpx.AsyncClient:
    app = FastAPI()
    check = bearer_token(SecretStr(secret) if secret else None, name="admin",
                         when_unset=when_unset,  # type: ignore[arg-type]
                         unset_detail="off: set NURTURE_X_ADMIN_TOKEN")

    @app.get("/x", dependencies=[Depends(check)])
    def x() -> dict[str, str]:
        return {"ok": "yes"}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_the_right_token_passes_and_any_other_is_a_401_with_a_challenge() -> None:
    async with client("s3cret-token-value") as c:
        ok = await c.get("/x", headers={"Authorization": "Bearer s3cret-token-value"})
        assert ok.status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "s3cret-token-value"},
                        {"Authorization": "Basic czNjcmV0LXRva2VuLXZhbHVlOg=="}):
            response = await c.get("/x", headers=headers)
            assert response.status_code == 401
            assert response.json()["detail"] == "missing or wrong admin token"
            assert response.headers["www-authenticate"] == 'Bearer realm="nurture"'
            assert "s3cret" not in response.text


async def test_while_unset_the_endpoints_answer_as_told_naming_the_setting() -> None:
    for status in (404, 401):
        async with client(None, status) as c:
            response = await c.get("/x", headers={"Authorization": "Bearer anything"})
        assert response.status_code == status
        assert "NURTURE_X_ADMIN_TOKEN" in response.json()["detail"]
