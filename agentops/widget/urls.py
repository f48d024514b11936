from django.urls import path

from agentops.widget import views

app_name = "widget"

urlpatterns = [
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key_id>/enabled", views.key_enabled, name="key_enabled"),
    path("keys/<int:key_id>/origins", views.key_origin_allow, name="key_origin_allow"),
    path("frame/", views.frame, name="frame"),
    path("api/available", views.api_available, name="api_available"),
    path("api/identify", views.api_identify, name="api_identify"),
    path("api/session", views.api_session, name="api_session"),
    path("api/messages", views.api_message, name="api_message"),
    path("api/rating", views.api_rating, name="api_rating"),
]
