from asgiref.sync import async_to_sync

from django_realtime.consumers import JsonWebsocketConsumer, LoginRequiredMixin


class ChatConsumer(LoginRequiredMixin, JsonWebsocketConsumer):
    def connect(self):
        # Only logged-in users get here: the mixin closes the others' sockets.
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.group_name = f"chat.{self.room_name}"
        async_to_sync(self.channel_layer.group_add)(self.group_name, self.channel_name)
        self.accept()

    def disconnect(self, code):
        async_to_sync(self.channel_layer.group_discard)(
            self.group_name, self.channel_name
        )

    def receive_json(self, content):
        async_to_sync(self.channel_layer.group_send)(
            self.group_name,
            {
                "type": "chat.message",
                # Who is talking: the user of the session, not what the page says.
                "author": self.scope["user"].get_username(),
                "text": content["text"],
            },
        )

    def chat_message(self, event):
        self.send_json({"author": event["author"], "text": event["text"]})
