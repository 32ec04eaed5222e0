from django_realtime.consumers import LoginRequiredMixin
from django_realtime.streams import RequestError, StreamConsumer

from .models import MAX_LENGTH, Message, room_stream


class ChatConsumer(LoginRequiredMixin, StreamConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        await self.accept()

    async def authorize_stream(self, stream):
        # This socket may follow its own room's stream, and nothing else.
        return stream == room_stream(self.room_name)

    def request_post(self, data):
        # A plain method: it runs in a thread, where the ORM works as in a view.
        text = data.get("text", "") if isinstance(data, dict) else ""
        if not isinstance(text, str) or not text.strip():
            raise RequestError("invalid", "Say something.")
        if len(text) > MAX_LENGTH:
            raise RequestError("invalid", f"Say it in {MAX_LENGTH} characters.")
        message = Message.post(self.room_name, self.scope["user"], text)
        return {"id": message.pk}
