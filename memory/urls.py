from django.urls import path

from memory import views

app_name = "memory"

urlpatterns = [
    path("", views.memory_index, name="index"),
    path("agents/<slug:slug>/", views.agent_memories, name="agent"),
    path("agents/<slug:slug>/new/", views.memory_new, name="create"),
    path("agents/<slug:slug>/history/", views.agent_history, name="history"),
    path("<int:pk>/", views.memory_detail, name="detail"),
    path("<int:pk>/edit/", views.memory_edit, name="edit"),
    path("<int:pk>/pin/", views.memory_pin, name="pin"),
    path("<int:pk>/delete/", views.memory_remove, name="delete"),
]
