# Every process of the site (runserver, manage.py shell, workers) shares
# groups and streams through one SQLite file.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
        "CONFIG": {"path": BASE_DIR / "realtime.sqlite3"},
    },
}
REALTIME = {
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
        "OPTIONS": {"path": BASE_DIR / "realtime.sqlite3"},
    },
}
