from asgiref.sync import async_to_sync

from django_realtime.consumers import JsonWebsocketConsumer


class ChatConsumer(JsonWebsocketConsumer):
    def connect(self):
        # The route captures the room's name: ws/chat/<slug:room_name>/.
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.group_name = f"chat.{self.room_name}"
        async_to_sync(self.channel_layer.group_add)(self.group_name, self.channel_name)
        self.accept()

    def disconnect(self, code):
        async_to_sync(self.channel_layer.group_discard)(
            self.group_name, self.channel_name
        )

    def receive_json(self, content):
        # A message from this socket's page goes to everyone in the room...
        async_to_sync(self.channel_layer.group_send)(
            self.group_name, {"type": "chat.message", "text": content["text"]}
        )

    def chat_message(self, event):
        # ... and each of them, this socket included, sends it to its page.
        self.send_json({"text": event["text"]})
