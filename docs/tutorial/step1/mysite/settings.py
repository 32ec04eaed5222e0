# django_realtime first: its runserver, which serves WebSockets, must be the
# one manage.py finds. Then the chat app.
INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS, "chat"]

# The ASGI application that runserver serves.
ASGI_APPLICATION = "mysite.asgi.application"
