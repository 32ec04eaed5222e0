from django_realtime.consumers import WebsocketConsumer


class EchoConsumer(WebsocketConsumer):
    def receive(self, text_data=None, bytes_data=None):
        # Send every message straight back to the client that sent it.
        self.send(text_data=text_data, bytes_data=bytes_data)
