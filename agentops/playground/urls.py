from django.urls import path

from agentops.playground import views

app_name = "playground"

urlpatterns = [
    path("", views.index, name="index"),
    path("calls/<uuid:trace_id>/<str:span_id>/", views.open_call, name="open"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run"),
]
